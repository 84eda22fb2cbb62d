"""``surfrecon serve`` as a real process with its embedded defaults (its own local Ray, SQLite,
local artifacts), driven by ``surfrecon submit | jobs | cancel``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from svc_helpers import serve_process


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env["SURFRECON_RAY_NUM_CPUS"] = "1"
    with serve_process(data, env) as (url, _):
        yield url, data


def test_serve_uses_its_own_state_dir_and_local_ray(served, ray_session):
    url, data = served
    assert (data / "state" / "jobs.db").is_file() and (data / "state" / "artifacts").is_dir()
    log = (data / "serve.log").read_text()
    assert "ray connected: 127.0.0.1:" in log  # a loopback-only Ray of its own...
    assert f"ray connected: {ray_session}" not in log  # ...not the test session's


def test_submit_wait_downloads_artifacts(served, inputs, tmp_path):
    url, _ = served
    out = tmp_path / "out"
    res = _cli("submit", str(inputs["sphere"]), str(inputs["other"]), "--server", url, "--method", "poisson",
               "--preset", "fast", "--format", "ply,stl", "--wait", "-o", str(out), "-q")
    assert res.returncode == 0, res.stdout + res.stderr
    for stem in ("sphere", "other"):
        assert sorted(p.name for p in (out / stem).iterdir()) == ["mesh.ply", "mesh.stl", "metrics.json"]
        assert (out / stem / "mesh.ply").read_bytes().startswith(b"ply")
    assert res.stdout.count("succeeded") >= 2


def test_submit_batch_with_spec_json(served, inputs, tmp_path):
    url, _ = served
    out = tmp_path / "batch"
    res = _cli("submit", str(inputs["sphere"]), str(inputs["sphere_npy"]), "--server", url, "--batch",
               "--spec", '{"method": "poisson", "preset": "fast", "formats": ["obj"]}', "--wait", "-o", str(out), "-q")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("batch ") and "2 jobs" in res.stdout
    # Two files with the same stem: the job id tells their folders apart.
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 2 and all(f.startswith("sphere-") for f in folders)
    assert all((out / f / "mesh.obj").is_file() for f in folders)
    bad = _cli("submit", str(inputs["sphere"]), "--server", url, "--spec", "{not json")
    assert bad.returncode == 2 and "--spec is not JSON" in bad.stderr


def test_submit_exits_non_zero_when_a_job_fails_or_is_refused(served, inputs):
    url, _ = served
    env = {**os.environ, "SURFRECON_SERVER": url}  # server from the environment
    failed = _cli("submit", str(inputs["sphere"]), "--method", "poisson", "--device", "cuda", "--wait", "-q", env=env)
    assert failed.returncode == 1 and "no_gpu" in failed.stdout
    refused = _cli("submit", str(inputs["malformed"]), env=env)
    assert refused.returncode == 2 and "malformed_file" in refused.stderr
    missing = _cli("submit", "/nonexistent/cloud.xyz", env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_jobs_and_cancel(served, inputs):
    url, _ = served
    queued = _cli("submit", str(inputs["sphere"]), "--server", url, "--method", "digs", "--preset", "quality")
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.split()[0]
    listing = _cli("jobs", "--server", url)
    assert listing.returncode == 0 and job_id in listing.stdout and "sphere.xyz" in listing.stdout
    shown = _cli("jobs", job_id, "--server", url)
    assert shown.returncode == 0 and f'"id": "{job_id}"' in shown.stdout
    canceled = _cli("cancel", job_id, "--server", url)
    assert canceled.returncode == 0 and job_id in canceled.stdout
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{url}/v1/jobs/{job_id}").json())["status"] != "canceled":
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    unknown = _cli("cancel", "0" * 32, "--server", url)
    assert unknown.returncode == 1 and "job_not_found" in unknown.stderr
    assert _cli("jobs", "0" * 32, "--server", url).returncode == 2


def test_serve_joins_the_cluster_named_by_ray_address(ray_session, inputs, tmp_path):
    """With RAY_ADDRESS the same command submits to that cluster instead of starting one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURFRECON_")}
    env["RAY_ADDRESS"] = ray_session
    with serve_process(tmp_path, env, ready_timeout=120) as (url, _):
        res = _cli("submit", str(inputs["sphere"]), "--server", url, "--method", "poisson",
                   "--preset", "fast", "--wait", "-q")
        assert res.returncode == 0, res.stdout + res.stderr
    log_text = (tmp_path / "serve.log").read_text()
    assert f"ray connected: {ray_session}" in log_text
