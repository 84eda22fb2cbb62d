"""What an operator installs, started for real.

The committed tree (``git archive HEAD``: no ``node_modules``, nothing uncommitted) goes through
``docker/install.sh``, the script both Dockerfiles ``RUN``, into a fresh venv: torch, the wheel
built from that tree (its build fetches three.js with ``npm ci``, as the images' node stage does)
installed with the cluster extras under ``constraints.txt``, and the hash-grid kernel. What is
skipped is what cannot run here: PyTorch's own index (unreachable; pip takes the locked torch
from its usual sources) and the GPU image's tiny-cuda-nn build.

From that environment, outside the checkout and with no ``PYTHONPATH``:

* the wheel alone serves the web page and every module and asset the page loads (imports
  followed from ``/`` through the import map, parsed here independently of the build), and the
  installed CLI runs a Poisson job to success;
* the images start as ``docker/compose.yaml`` runs them: a Ray head (the compose command, token
  auth as in the compose file), a worker by the GPU image's entrypoint, the API by the API
  image's command with the compose settings (``SURFRECON_DISPATCHER=external``) and
  ``surfrecon dispatcher``; a job runs on the worker node and the images' health checks pass.

Building the environment takes minutes (most of it unpacking torch, Open3D and Ray: 3 under
no load, 10 on a machine loaded by other test runs).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("succeeded", "failed", "canceled")

pytestmark = [
    pytest.mark.slow,
    # Building the environment is part of the first test's set-up: minutes on a loaded machine.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout"),
    pytest.mark.skipif(shutil.which("npm") is None, reason="the wheel build needs npm"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(venv: Path, **extra: str) -> dict[str, str]:
    """This environment without the checkout on the path, Ray or surfrecon settings, with the
    image's venv first on PATH (as the images' ENV has it) and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RAY_ADDRESS") and not k.startswith(("SURFRECON_", "RAY_"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update({"VIRTUAL_ENV": str(venv), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                "TORCH_EXTENSIONS_DIR": str(venv.parent / "torch_extensions")})
    env.update(extra)
    return env


def _constraint(name: str) -> str:
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    return pins[name]


@pytest.fixture(scope="module")
def committed_tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("committed")
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(out, filter="data")
    assert not (out / "service" / "web" / "node_modules").exists()
    return out


@pytest.fixture(scope="module")
def image_env(committed_tree, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("image") / "venv"
    # PIP_NO_COMPILE: the images byte-compile at install; here that is only time.
    env = _clean_env(venv, TORCH_INDEX="", PIP_NO_COMPILE="1")
    env["PATH"] = env["PATH"].split(":", 1)[1]  # the venv does not exist yet
    proc = subprocess.run(["bash", str(committed_tree / "docker" / "install.sh"), str(venv), str(committed_tree)],
                          cwd=venv.parent, env=env, capture_output=True, text=True, timeout=2400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return venv


@contextlib.contextmanager
def _processes(log_dir: Path):
    """Start processes in their own groups; all are stopped (SIGTERM, then SIGKILL) at the end,
    and so is anything left naming ``log_dir`` (Ray's processes under its temp dir)."""
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start(name: str, args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
        log = log_dir / f"{name}.log"
        with open(log, "w") as f:
            p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        procs.append((p, log))
        return p

    try:
        yield start
    finally:
        for p, _ in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p, _ in reversed(procs):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        _kill_naming(str(log_dir))


def _kill_naming(marker: str) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered 200:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


def _wait_log(pattern: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while pattern not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r}:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.3)


def _sphere_xyz(path: Path) -> Path:
    d = np.random.default_rng(0).normal(size=(3000, 3))
    np.savetxt(path, d / np.linalg.norm(d, axis=1, keepdims=True), fmt="%.6f")
    return path


def _wait_job(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in FINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


# -- the wheel --------------------------------------------------------------------------------

# `import ... from 'm'`, `export ... from 'm'`, `import 'm'` at the start of a line.
_IMPORT = re.compile(r"""^\s*(?:import|export)\b(?:[^;'"]*?\bfrom)?\s*['"]([^'"]+)['"]""", re.MULTILINE)
_DYNAMIC = re.compile(r"""\bimport\(\s*['"]([^'"]+)['"]\s*\)|new\s+Worker\(\s*['"]([^'"]+)['"]""")


def _page_urls(client: httpx.Client) -> dict[str, httpx.Response]:
    """Every URL the page loads, fetched: its stylesheet and module script, then every module
    those import, resolved through the page's import map as a browser does."""
    html = client.get("/").text
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.DOTALL).group(1))["imports"]
    todo = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html) + \
        re.findall(r'<script type="module" src="([^"]+)"', html)
    fetched: dict[str, httpx.Response] = {}
    while todo:
        url = todo.pop()
        if url in fetched:
            continue
        r = fetched[url] = client.get(url)
        if r.status_code != 200 or not url.endswith(".js"):
            continue
        code = re.sub(r"/\*.*?\*/", "", r.text, flags=re.DOTALL)
        specs = _IMPORT.findall(code) + [a or b for a, b in _DYNAMIC.findall(code)]
        for spec in specs:
            if spec.startswith("."):
                todo.append(os.path.normpath(os.path.join(os.path.dirname(url), spec)))
            elif spec.startswith("/"):
                todo.append(spec)
            else:
                key = spec if spec in imports else max((k for k in imports if k.endswith("/") and spec.startswith(k)),
                                                       key=len)
                todo.append(imports[key] + spec[len(key):])
    return fetched


def test_wheel_alone_serves_the_page_with_all_its_modules_and_runs_a_job(image_env, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(image_env)
    where = subprocess.run([str(image_env / "bin" / "python"), "-c", "import service; print(service.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(image_env), where  # the installed wheel, not the checkout

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _processes(tmp_path) as start:
        proc = start("serve", ["surfrecon", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--data-dir", str(tmp_path / "data")], env, elsewhere)
        _wait_http(f"{url}/readyz", proc, tmp_path / "serve.log")
        with httpx.Client(base_url=url, timeout=30) as client:
            page = _page_urls(client)
            bad = {u: r.status_code for u, r in page.items() if r.status_code != 200}
            assert not bad, bad
            for u, r in page.items():
                want = "text/css" if u.endswith(".css") else "javascript"
                assert want in r.headers["content-type"], (u, r.headers["content-type"])
            # The page itself, its modules, the worker and three.js with the addons it uses.
            assert {"/web/main.js", "/web/viewer.js", "/web/parse-worker.js", "/web/style.css",
                    "/web/vendor/three/build/three.module.js", "/web/vendor/three/build/three.core.js",
                    "/web/vendor/three/examples/jsm/controls/OrbitControls.js",
                    "/web/vendor/three/examples/jsm/loaders/GLTFLoader.js"} <= set(page)
            assert "REVISION = '187'" in page["/web/vendor/three/build/three.core.js"].text

        sphere = _sphere_xyz(elsewhere / "sphere.xyz")
        out = subprocess.run(["surfrecon", "submit", str(sphere), "--server", url, "--method", "poisson",
                              "--preset", "fast", "--format", "ply", "--wait", "-o", str(elsewhere / "out")],
                             cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        mesh = elsewhere / "out" / "mesh.ply"
        assert mesh.stat().st_size > 1000


# -- the images -------------------------------------------------------------------------------

def _dockerfile_json(name: str, instruction: str) -> list[str]:
    text = (ROOT / "docker" / name).read_text()
    return json.loads(re.search(rf"^{instruction}\s+(\[.*\])\s*$", text, re.MULTILINE).group(1))


def _healthcheck(name: str) -> list[str]:
    text = (ROOT / "docker" / name).read_text()
    return json.loads(re.search(r"^HEALTHCHECK[^\n]*\\\n\s*CMD\s+(\[.*\])\s*$", text, re.MULTILINE).group(1))


def test_images_start_as_compose_runs_them(image_env, tmp_path):
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    assert subprocess.run([str(image_env / "bin" / "python"), "-c", "import ray; print(ray.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip() == _constraint("ray")
    ray_dir = Path(f"/tmp/ri{secrets.token_hex(3)}")  # Ray's unix socket paths must stay short
    ray_dir.mkdir()
    gcs_port, api_port = _free_port(), _free_port()
    address = f"127.0.0.1:{gcs_port}"
    data = tmp_path / "data"
    # The compose file's settings, with this host's stores in place of PostgreSQL and MinIO (every
    # process runs here), and its Ray token.
    ray_env = dict(compose["worker-gpu"]["environment"])
    assert ray_env["RAY_AUTH_MODE"] == "token"
    ray_env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    ours = {"SURFRECON_DATABASE_URL": f"sqlite:///{data}/jobs.db", "SURFRECON_ARTIFACT_URL": str(data / "artifacts")}

    def env_of(service: str) -> dict[str, str]:
        settings = {k: str(v) for k, v in compose[service].get("environment", {}).items()
                    if k.startswith(("SURFRECON_", "RAY_"))}
        settings.pop("SURFRECON_S3_ENDPOINT_URL", None)
        settings.update({k: v for k, v in ours.items() if k in settings})
        if "RAY_AUTH_TOKEN" in settings:
            settings["RAY_AUTH_TOKEN"] = ray_env["RAY_AUTH_TOKEN"]
        if "RAY_ADDRESS" in settings:
            settings["RAY_ADDRESS"] = address
        return _clean_env(image_env, SURFRECON_DATA_DIR=str(data), **settings)

    node_args = ["--node-ip-address=127.0.0.1", "--object-store-memory=100000000",
                 f"--dashboard-agent-listen-port={_free_port()}"]
    with _processes(ray_dir) as start:
        head_cmd = [a.replace("--port=6379", f"--port={gcs_port}").replace("--dashboard-host=0.0.0.0",
                                                                              "--dashboard-host=127.0.0.1")
                    for a in compose["ray-head"]["command"]]
        head = start("head", [*head_cmd, f"--temp-dir={ray_dir}", f"--dashboard-port={_free_port()}", *node_args],
                     env_of("ray-head"), tmp_path)
        _wait_log("Ray runtime started", head, ray_dir / "head.log")
        health = compose["ray-head"]["healthcheck"]["test"][1:]
        health = [a.replace("127.0.0.1:6379", address) for a in health]
        assert subprocess.run(health, env=env_of("ray-head"), capture_output=True, timeout=60,
                              check=False).returncode == 0

        # The GPU image's entrypoint, with a CPU for this host in place of a GPU.
        entry = _dockerfile_json("worker-gpu.Dockerfile", "ENTRYPOINT")
        worker_args = ["--num-cpus=1", f"--dashboard-agent-listen-port={_free_port()}",
                       "--node-ip-address=127.0.0.1", "--object-store-memory=100000000"]
        worker = start("worker", [*entry, *worker_args], env_of("worker-gpu"), tmp_path)
        _wait_log("Ray runtime started", worker, ray_dir / "worker.log")
        assert subprocess.run(_healthcheck("worker-gpu.Dockerfile"), env=env_of("worker-gpu"), capture_output=True,
                              timeout=60,
                              check=False).returncode == 0

        api_cmd = _dockerfile_json("api.Dockerfile", "CMD")
        api_cmd = [{"0.0.0.0": "127.0.0.1", "8000": str(api_port)}.get(a, a) for a in api_cmd]
        api = start("api", api_cmd, env_of("api"), tmp_path)
        url = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{url}/healthz", api, ray_dir / "api.log")
        dispatcher = start("dispatcher", compose["dispatcher"]["command"], env_of("dispatcher"), tmp_path)
        _wait_log("dispatcher running", dispatcher, ray_dir / "dispatcher.log")

        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/readyz").json()["checks"]["dispatcher"] == "external"
            sphere = _sphere_xyz(tmp_path / "sphere.xyz")
            with open(sphere, "rb") as f:
                r = client.post("/v1/jobs", files={"file": ("sphere.xyz", f)},
                                data={"spec": json.dumps({"method": "poisson", "preset": "fast", "formats": ["ply"]})})
            assert r.status_code == 202, r.text
            job = _wait_job(client, r.json()["id"])
            assert job["status"] == "succeeded", (job, (ray_dir / "dispatcher.log").read_text()[-3000:])
            assert client.get(f"/v1/jobs/{job['id']}/artifacts/mesh.ply").status_code == 200
    shutil.rmtree(ray_dir, ignore_errors=True)
