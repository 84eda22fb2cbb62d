"""Processes for the scale-out tests: a Ray cluster started with ``ray start``, a moto S3 server,
a throw-away PostgreSQL schema, and ``surfrecon dispatcher`` subprocesses.

Everything is started in its own process group and torn down by id (never ``ray stop``, which
would stop every Ray on the machine): SIGTERM to the group, SIGKILL after a grace period, then
SIGKILL to any process still naming this cluster's temp dir on its command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from svc_helpers import PG_URL, free_port

RAY = str(Path(sys.executable).parent / "ray")
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
FAST_ENV = {
    "SURFRECON_HEARTBEAT_INTERVAL_S": "0.5", "SURFRECON_HEARTBEAT_TIMEOUT_S": "15",
    "SURFRECON_CANCEL_GRACE_S": "5", "SURFRECON_RECONCILE_INTERVAL_S": "0.25",
    "SURFRECON_EVENTS_POLL_S": "0.1", "SURFRECON_CHECKPOINT_EVERY_S": "0.5",
}


def base_env(**extra: str) -> dict[str, str]:
    """This environment without Ray or surfrecon settings of the caller, plus S3 credentials,
    test timings, one thread per process and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SURFRECON_", "RAY_"))}
    env.update(S3_ENV)
    env.update(FAST_ENV)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    # Ray >= 2.5x turns token auth on for a head whenever ~/.ray/auth_token exists (any local
    # ray.init() writes one), but not for joining nodes: say explicitly, for every process.
    env["RAY_AUTH_MODE"] = "disabled"
    env.update(extra)
    return env


@dataclass
class RayCluster:
    """A head node and worker nodes started by ``ray start --block``, each in its own group."""

    address: str
    temp_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def node_ids(self) -> dict[str, dict]:
        """{node id: resources} of the alive nodes (asked from a short-lived driver process)."""
        code = (f"import json, ray; ray.init(address={self.address!r}, log_to_driver=False, configure_logging=False)\n"
                "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                             env=base_env())
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])


def _start_node(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen([RAY, "start", *args, "--block"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _wait_for(pattern: str, log: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pattern not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _node_args(cpus: int) -> list[str]:
    # Two nodes on one host: every port that has a fixed default gets a free one.
    return ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--object-store-memory", str(100 << 20),
            "--dashboard-agent-listen-port", str(free_port())]


@contextlib.contextmanager
def ray_cluster(*, head_cpus: int = 1, worker_nodes: list[dict] = (),
                env: dict[str, str] | None = None) -> Iterator[RayCluster]:
    """Head with ``head_cpus`` CPUs plus one node per entry of ``worker_nodes`` (its custom
    resources, one CPU each). Workers inherit S3 credentials, and ``env``, from the node's
    environment."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # unix socket paths must stay short
    port = free_port()
    cluster = RayCluster(address=f"127.0.0.1:{port}", temp_dir=temp_dir)
    env = base_env(**(env or {}))
    try:
        head_log = temp_dir / "head.log"
        head = _start_node(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(temp_dir),
                            "--disable-usage-stats", *_node_args(head_cpus)], head_log, env)
        cluster.procs.append(head)
        _wait_for("Ray runtime started", head_log, head, 120)
        for i, resources in enumerate(worker_nodes):
            log = temp_dir / f"worker{i}.log"
            node = _start_node(["--address", cluster.address, "--resources", json.dumps(resources),
                                *_node_args(1)], log, env)
            cluster.procs.append(node)
            _wait_for("Ray runtime started", log, node, 120)
        yield cluster
    finally:
        stop_groups(cluster.procs)
        _kill_leftovers(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_groups(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace`` seconds."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(0.1, deadline - time.monotonic()))
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)


def _kill_leftovers(marker: str) -> None:
    """SIGKILL processes of this user whose command line names ``marker`` (this cluster's dir)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


@contextlib.contextmanager
def moto_s3(bucket: str = "artifacts") -> Iterator[str]:
    """A moto S3 server on a free loopback port with ``bucket``; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                     aws_secret_access_key="test").create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


@contextlib.contextmanager
def pg_schema() -> Iterator[tuple[str, str]]:
    """A unique PostgreSQL schema name on the test database, dropped afterwards; yields (url, schema)."""
    from service.jobs.db import DatabaseConfig, drop_schema

    cfg = DatabaseConfig(url=PG_URL, schema=f"surfrecon_stack_{uuid.uuid4().hex[:12]}")
    try:
        yield cfg.url, cfg.schema
    finally:
        drop_schema(cfg)


@contextlib.contextmanager
def dispatcher_process(data_dir: Path, env: dict, *, ready_timeout: float = 120.0) -> Iterator[subprocess.Popen]:
    """``surfrecon dispatcher`` until the block ends (SIGTERM, SIGKILL after 30 s)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = data_dir / f"dispatcher-{uuid.uuid4().hex[:6]}.ready"
    log_path = data_dir / f"{ready.stem}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "dispatcher", "--data-dir",
                                 str(data_dir / "state"), "--ready-file", str(ready)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dispatcher did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
