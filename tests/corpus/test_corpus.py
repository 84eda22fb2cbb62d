"""Every file and request of the bad-input corpus is refused cleanly: a 4xx problem+json with
a stable code from the API (a real ``surfrecon serve`` process, API-only, whose memory is
watched), and an error message with exit status 2 from ``surfrecon reconstruct``. After each
one the server still answers ``/healthz``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from generate import ESCAPE, FILE_CASES, request_cases, write_files
from svc_helpers import assert_problem, serve_process

RSS_GROWTH_BOUND = 256 << 20
"""Largest growth of the server's peak RSS over its idle RSS while it takes the whole corpus."""
POISSON = '{"method": "poisson", "preset": "fast"}'
POINT_CASES = [c for c in FILE_CASES if c.kind == "points"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_files(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """An API-only server process (jobs are never run); yields (client, psutil process, idle RSS,
    its data folder)."""
    data = tmp_path_factory.mktemp("api")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURFRECON_", "RAY_"))}
    env.update(SURFRECON_DISPATCHER="external", SURFRECON_MAX_UPLOAD_BYTES=str(64 << 20))
    with serve_process(data, env) as (url, _log), httpx.Client(base_url=url, timeout=120) as client:
        port = url.rsplit(":", 1)[1]
        proc = next(p for p in psutil.Process().children(recursive=True)
                    if "serve" in p.cmdline() and port in p.cmdline())
        client.get("/readyz").raise_for_status()
        yield client, proc, proc.memory_info().rss, str(data)


def _peak_rss(proc: psutil.Process) -> int:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _post_file(client: httpx.Client, case, path: Path) -> httpx.Response:
    data = path.read_bytes()
    if case.kind == "images":
        return client.post("/v1/uploads", params={"kind": "images"}, files={"file": (case.filename, data)})
    return client.post("/v1/jobs", files={"file": (case.filename, data)}, data={"spec": POISSON})


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.name for c in FILE_CASES])
def test_api_refuses_each_bad_file(api, corpus, case):
    client, _proc, _idle, data_dir = api
    r = _post_file(client, case, corpus[case.name])
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = assert_problem(r, r.status_code, r.json().get("code", "?"))
    assert body["code"] in case.codes, body
    assert data_dir not in body["detail"] and "/tmp/tmp" not in body["detail"]  # no server-side paths
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("case", request_cases(), ids=[c.name for c in request_cases()])
def test_api_refuses_each_bad_request(api, case):
    client, _proc, _idle, _data = api
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    r = client.post(case.path, content=case.content, headers=headers)
    if case.status < 400:  # accepted, but only as a name to display: nothing lands outside storage
        assert r.status_code == case.status, r.text[:300]
        assert r.json()["name"] and not Path(ESCAPE).exists()
    else:
        body = assert_problem(r, case.status, r.json().get("code", "?"))
        assert body["code"] in case.codes, body
    assert client.get("/healthz").status_code == 200


def test_server_memory_stayed_bounded(api, corpus):
    """Runs after the cases above (file order): the server's peak RSS grew by less than the bound,
    though the corpus claims 10^8-point clouds, 2.4 GB arrays and 64 MiB archives."""
    client, proc, idle, _data = api
    for case in FILE_CASES:  # once more, in case this test runs alone
        _post_file(client, case, corpus[case.name])
    growth = _peak_rss(proc) - idle
    print(f"server RSS idle {idle / 2**20:.0f} MiB, peak growth {growth / 2**20:.0f} MiB")
    assert growth < RSS_GROWTH_BOUND, f"peak RSS grew by {growth / 2**20:.0f} MiB"
    assert client.get("/readyz").status_code == 200


def test_cli_refuses_each_bad_point_cloud(corpus, tmp_path, capsys):
    """The ``reconstruct`` command, in this process: exit 2 and a one-line error, no traceback."""
    from service.cli import main

    for case in POINT_CASES:
        code = main(["reconstruct", str(corpus[case.name]), "-o", str(tmp_path / "out.ply"), "--method", "poisson",
                     "--preset", "fast", "-q"])
        err = capsys.readouterr().err
        assert code == 2, (case.name, code, err)
        assert err.startswith("error: ") and "Traceback" not in err, (case.name, err)
        assert case.filename in err or case.name in ("unknown_suffix", "no_suffix", "zip_as_points"), err
        assert not (tmp_path / "out.ply").exists()


@pytest.mark.parametrize("name", ["ply_1e8_points", "npy_object_pickle"])
def test_cli_process_exit_status(corpus, tmp_path, name):
    """The installed command as a process: same message, exit status 2."""
    out = subprocess.run([sys.executable, "-m", "service.cli", "reconstruct", str(corpus[name]), "-o",
                          str(tmp_path / "m.ply"), "--method", "poisson", "-q"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
