"""API keys: created once (shown once), stored as sha256 hashes, looked up on every request.

Keys are 256-bit random tokens, so an unsalted sha256 is enough to make the table useless to a
thief while allowing an indexed lookup. With auth disabled every request acts as the single
owner ``anonymous``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from service.errors import Unauthorized
from service.jobs.models import ApiKey, utcnow
from service.jobs.store import JobStore, new_id

ANONYMOUS = "anonymous"
KEY_PREFIX = "sr_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner id jobs are filed under, and the key's name for logs."""

    owner: str
    name: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(store: JobStore, *, name: str) -> tuple[ApiKey, str]:
    """Create a key called ``name``; returns (row, plaintext key). The plaintext is not kept."""
    if not name or len(name) > 128:
        raise ValueError(f"expected a key name of 1-128 characters, got {name!r}")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=new_id()[:16], name=name, key_hash=hash_key(plaintext), prefix=plaintext[:10],
                 created_at=utcnow())
    with store.writing() as s:
        s.add(row)
    return row, plaintext


def list_keys(store: JobStore) -> list[ApiKey]:
    with store.reading() as s:
        return list(s.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars())


def revoke_key(store: JobStore, *, key_id: str) -> bool:
    """Revoke by id (or unique id prefix); False if there is no such active key."""
    with store.writing() as s:
        rows = [k for k in s.execute(select(ApiKey).where(ApiKey.id.startswith(key_id))).scalars()
                if k.revoked_at is None]
        if len(rows) != 1:
            return False
        rows[0].revoked_at = utcnow()
        return True


def authenticate(store: JobStore, *, enabled: bool, api_key: str | None) -> Principal:
    """The caller for a request carrying ``api_key`` (None when absent); Unauthorized if refused."""
    if not enabled:
        return Principal(owner=ANONYMOUS, name=ANONYMOUS)
    if not api_key:
        raise Unauthorized(missing=True)
    digest = hash_key(api_key)
    with store.reading() as s:
        row = s.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
    if row is None or row.revoked_at is not None or not secrets.compare_digest(row.key_hash, digest):
        raise Unauthorized(missing=False)
    return Principal(owner=row.id, name=row.name)
