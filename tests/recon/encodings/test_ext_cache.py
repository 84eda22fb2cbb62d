"""The kernel cache: one per environment, and a lock left by a killed build does not hang set-up."""

from __future__ import annotations

import os
import sys
import time

from recon.encodings import _ext


def test_stale_lock_is_removed_and_fresh_lock_is_kept(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    assert not _ext.clear_stale_lock(tmp_path)  # fresh: a live build holds it
    assert lock.exists()
    old = time.time() - _ext.STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    assert _ext.clear_stale_lock(tmp_path)
    assert not lock.exists()
    assert not _ext.clear_stale_lock(tmp_path)  # nothing to remove


def test_cache_lives_in_the_virtual_environment(monkeypatch):
    monkeypatch.delenv("SURFRECON_EXT_DIR", raising=False)
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    path = _ext.build_directory()
    if sys.prefix != sys.base_prefix:
        assert path.is_relative_to(sys.prefix)
    monkeypatch.setenv("SURFRECON_EXT_DIR", "/x/y")
    assert str(_ext.build_directory()) == f"/x/y/{_ext.NAME}"
