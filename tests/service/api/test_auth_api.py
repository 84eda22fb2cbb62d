"""API keys: required when enabled, hashed at rest, and each key sees only its own jobs."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from sqlalchemy import select
from svc_helpers import POISSON, assert_problem, submit


def _keys_cli(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "keys", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def auth_server(make_server):
    return make_server(auth_enabled=True)


@pytest.fixture(scope="module")
def keys(auth_server) -> dict[str, str]:
    """Two keys made with ``surfrecon keys create``, printed once on stdout."""
    out = {}
    for name in ("alice", "bob"):
        res = _keys_cli(auth_server.ctx.settings.data_dir, "create", name)
        assert res.returncode == 0, res.stderr
        out[name] = res.stdout.strip()
        assert out[name].startswith("sr_") and "shown only once" in res.stderr
    return out


def test_keys_are_stored_hashed(auth_server, keys):
    from service.jobs.models import ApiKey

    with auth_server.ctx.store.reading() as s:
        rows = {k.name: k for k in s.execute(select(ApiKey)).scalars()}
    for name, key in keys.items():
        assert rows[name].key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in (rows[name].key_hash, rows[name].prefix)
    listing = _keys_cli(auth_server.ctx.settings.data_dir, "list")
    assert listing.returncode == 0 and "alice" in listing.stdout and keys["alice"] not in listing.stdout


def test_requests_without_a_valid_key_are_401(auth_server, keys, inputs):
    c = auth_server.client
    for r in (c.get("/v1/jobs"), submit(c, inputs["sphere"], POISSON),
              c.get("/v1/jobs", headers={"X-API-Key": "sr_wrong"}),
              c.get("/v1/jobs", headers={"Authorization": "Bearer sr_wrong"})):
        body = assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer" and body["detail"]
    assert c.get("/healthz").status_code == 200  # probes stay open


def test_each_key_sees_only_its_own_jobs_and_artifacts(auth_server, keys, inputs):
    c = auth_server.client
    alice, bob = {"X-API-Key": keys["alice"]}, {"Authorization": f"Bearer {keys['bob']}"}
    r = submit(c, inputs["sphere"], POISSON, headers=alice)
    assert r.status_code == 202, r.text
    job = auth_server.wait_for(r.json()["id"], headers=alice)
    assert job["status"] == "succeeded"
    art = job["artifacts"][0]["url"]
    assert c.get(art, headers=alice).status_code == 200

    jid = job["id"]
    for resp in (c.get(f"/v1/jobs/{jid}", headers=bob), c.get(f"/v1/jobs/{jid}/events", headers=bob),
                 c.post(f"/v1/jobs/{jid}/cancel", headers=bob), c.get(art, headers=bob)):
        assert_problem(resp, 404, "job_not_found")  # not 403: existence is not revealed
    assert c.get("/v1/jobs", headers=bob).json()["items"] == []
    assert [j["id"] for j in c.get("/v1/jobs", headers=alice).json()["items"]] == [jid]
    # Uploads and batches are private too.
    upload_id = job["input"]["upload_id"]
    assert_problem(c.get(f"/v1/uploads/{upload_id}", headers=bob), 404, "upload_not_found")
    assert_problem(c.post("/v1/jobs", json={"spec": POISSON, "upload_id": upload_id}, headers=bob),
                   404, "upload_not_found")
    # The same idempotency key under two keys makes two jobs.
    a = submit(c, inputs["sphere"], POISSON, headers={**alice, "Idempotency-Key": "same"})
    b = submit(c, inputs["sphere"], POISSON, headers={**bob, "Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]


def test_revoked_key_is_refused(auth_server):
    res = _keys_cli(auth_server.ctx.settings.data_dir, "create", "temp")
    key = res.stdout.strip()
    assert auth_server.client.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
    key_id = res.stderr.split("created key ")[1].split()[0]
    assert _keys_cli(auth_server.ctx.settings.data_dir, "revoke", key_id).returncode == 0
    assert_problem(auth_server.client.get("/v1/jobs", headers={"X-API-Key": key}), 401, "unauthorized")
    assert _keys_cli(auth_server.ctx.settings.data_dir, "revoke", key_id).returncode == 1
