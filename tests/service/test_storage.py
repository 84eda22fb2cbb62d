"""The artifact store over a local directory and over S3 (a moto server on loopback)."""

from __future__ import annotations

import hashlib
import os

import pytest

from service.storage import ArtifactStore, StorageConfig, check_key, sha256_file


@pytest.fixture(params=["local", "s3"])
def artifacts(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(StorageConfig(url=str(tmp_path / "store")))
    endpoint = request.getfixturevalue("s3_endpoint")
    return ArtifactStore(StorageConfig(url=f"s3://artifacts/run-{tmp_path.name}", endpoint_url=endpoint))


def test_round_trip_streaming_and_delete(artifacts: ArtifactStore, tmp_path):
    src = tmp_path / "mesh.ply"
    payload = os.urandom(3 << 20)  # several chunks
    src.write_bytes(payload)
    artifacts.put_file(src, "jobs/j1/artifacts/mesh.ply")
    assert src.exists()  # copied, not moved
    assert artifacts.exists("jobs/j1/artifacts/mesh.ply")
    assert artifacts.size("jobs/j1/artifacts/mesh.ply") == len(payload)
    chunks = list(artifacts.iter_bytes("jobs/j1/artifacts/mesh.ply", chunk=1 << 20))
    assert len(chunks) == 3 and b"".join(chunks) == payload
    dest = tmp_path / "back" / "m.ply"
    artifacts.get_file("jobs/j1/artifacts/mesh.ply", dest)
    assert sha256_file(dest) == hashlib.sha256(payload).hexdigest()

    moved = tmp_path / "ckpt.pt"
    moved.write_bytes(b"state")
    artifacts.put_file(moved, "jobs/j1/checkpoint.pt", move=True)
    assert not moved.exists() and artifacts.exists("jobs/j1/checkpoint.pt")
    artifacts.delete("jobs/j1/checkpoint.pt")
    assert not artifacts.exists("jobs/j1/checkpoint.pt")
    artifacts.delete("jobs/j1/checkpoint.pt")  # missing is fine
    artifacts.delete_prefix("jobs/j1")
    assert not artifacts.exists("jobs/j1/artifacts/mesh.ply")
    artifacts.check()


def test_local_path_only_for_the_local_store(artifacts: ArtifactStore):
    path = artifacts.local_path("uploads/u/input.xyz")
    if artifacts.cfg.is_local:
        assert path is not None and path.name == "input.xyz" and artifacts.root in path.parents
    else:
        assert path is None


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/path", "a/../../b", "a//b", "", "a/./b", "sp ace"])
def test_keys_cannot_escape_the_store(key: str, tmp_path):
    with pytest.raises(ValueError, match="expected a relative artifact key"):
        check_key(key)
    with pytest.raises(ValueError):
        ArtifactStore(StorageConfig(url=str(tmp_path))).exists(key)
