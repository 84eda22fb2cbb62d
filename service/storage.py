"""Artifact store: uploads, job artifacts and checkpoints, addressed by slash-separated keys.

A local directory by default; any ``s3://bucket/prefix`` URL goes through fsspec/s3fs (with
``endpoint_url`` for MinIO and other S3-compatible stores). Keys look like
``uploads/<id>/input.xyz``, ``jobs/<id>/artifacts/mesh.ply`` and ``jobs/<id>/checkpoint.pt``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


@dataclass(frozen=True)
class StorageConfig:
    """Where artifacts live (picklable, sent to Ray workers)."""

    url: str
    endpoint_url: str | None = None

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")


def check_key(key: str) -> str:
    """Keys are relative, slash-separated, with no '..' parts; anything else is a ValueError."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"expected a relative artifact key, got {key!r}")
    return key


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class ArtifactStore:
    """put/get/open/delete by key over a local directory or an fsspec filesystem."""

    def __init__(self, cfg: StorageConfig) -> None:
        self.cfg = cfg
        if cfg.is_local:
            self.root = Path(cfg.url.removeprefix("file://")).expanduser().resolve()
            self.root.mkdir(parents=True, exist_ok=True)
            self.fs = None
        else:
            import fsspec

            protocol, _, rest = cfg.url.partition("://")
            options: dict = {}
            if protocol in ("s3", "s3a"):
                options["use_listings_cache"] = False  # other processes write here too
                if cfg.endpoint_url:
                    options["client_kwargs"] = {"endpoint_url": cfg.endpoint_url}
            # A fresh instance: fsspec caches filesystems, which breaks after a fork (Ray workers).
            self.fs = fsspec.filesystem(protocol, skip_instance_cache=True, **options)
            self.root = rest.rstrip("/")

    def _path(self, key: str) -> str:
        check_key(key)
        return str(self.root / key) if self.fs is None else f"{self.root}/{key}"

    def local_path(self, key: str) -> Path | None:
        """The file behind ``key`` when the store is local (lets workers skip a copy), else None."""
        return Path(self._path(key)) if self.fs is None else None

    def put_file(self, src: Path, key: str, *, move: bool = False) -> None:
        """Store the file ``src`` under ``key`` (atomically for the local store)."""
        dest = self._path(key)
        if self.fs is None:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(dest + ".part")
            if move:
                shutil.move(str(src), tmp)
            else:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        else:
            self.fs.put_file(str(src), dest)
            if move:
                Path(src).unlink(missing_ok=True)

    def get_file(self, key: str, dest: Path) -> None:
        """Copy ``key`` to the local file ``dest``."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.fs is None:
            shutil.copyfile(self._path(key), dest)
        else:
            self.fs.get_file(self._path(key), str(dest))

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return Path(path).is_file() if self.fs is None else bool(self.fs.exists(path))

    def size(self, key: str) -> int:
        path = self._path(key)
        return Path(path).stat().st_size if self.fs is None else int(self.fs.size(path))

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        return open(path, "rb") if self.fs is None else self.fs.open(path, "rb")

    def iter_bytes(self, key: str, *, chunk: int = CHUNK) -> Iterator[bytes]:
        """Stream an object in chunks (never the whole file in memory)."""
        with self.open(key) as f:
            while True:
                block = f.read(chunk)
                if not block:
                    return
                yield block

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under ``prefix/`` (missing is fine)."""
        path = self._path(prefix)
        if self.fs is None:
            shutil.rmtree(path, ignore_errors=True)
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.fs is None:
            Path(path).unlink(missing_ok=True)
        elif self.fs.exists(path):
            self.fs.rm(path)

    def check(self) -> None:
        """Raise if the store cannot be reached (readiness probe)."""
        if self.fs is None:
            if not os.access(self.root, os.W_OK):
                raise OSError(f"artifact directory {self.root} is not writable")
        else:
            self.fs.ls(self.root.split("/")[0])
