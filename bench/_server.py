"""Start a ``surfrecon serve`` process for the service benchmarks (its own state, a local Ray)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int, settings: dict[str, str], *, new_session: bool = False,
                 ready_timeout: float = 180.0) -> subprocess.Popen:
    """``surfrecon serve`` on ``port`` with state under ``data`` and the given ``SURFRECON_*``
    settings (the caller's own are dropped, as is ``RAY_ADDRESS``), once ``/readyz`` answers 200.

    The log goes to ``data/serve.log``; if the server exits or is not ready in time it is killed
    and RuntimeError carries the end of that log.
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env.update(settings)
    log_path = data / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--data-dir",
                                 str(data / "state"), "--log-level", "warning"], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=new_session)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log_path.read_text()[-3000:])
