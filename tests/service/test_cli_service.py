"""``surfrecon serve`` as a real process with its embedded defaults (its own local Ray, SQLite,
local artifacts), driven by ``surfrecon submit | jobs | cancel``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from svc_helpers import free_port


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("served")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env["SURFRECON_RAY_NUM_CPUS"] = "1"
    log = open(data / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                             "--data-dir", str(data / "state")], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("surfrecon serve did not become ready:\n" + (data / "serve.log").read_text()[-3000:])
        time.sleep(0.25)
    try:
        yield url, data
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURFRECON_")}
    env["RAY_ADDRESS"] = ray_session
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port),
                                 "--data-dir", str(tmp_path / "state")], stdout=log, stderr=subprocess.STDOUT,
                                env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.25)
            res = _cli("submit", str(inputs["sphere"]), "--server", url, "--method", "poisson", "--preset", "fast",
                       "--wait", "-q")
            assert res.returncode == 0, res.stdout + res.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    log_text = (tmp_path / "serve.log").read_text()
    assert f"ray connected: {ray_session}" in log_text
