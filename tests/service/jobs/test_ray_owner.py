"""A local Ray outlives the thread that started it, listens on loopback only, and its death
is seen.

Ray starts its GCS and raylet with PR_SET_PDEATHSIG, which fires when the forking *thread*
ends. The service starts Ray from pool threads that are later retired, so without care the
whole local Ray died at a random moment and its jobs waited forever. The check runs in a fresh
interpreter (as `surfrecon serve` does, Ray is first imported by ``init_ray``): this test
process already has its session Ray. The raylet is found and killed through psutil, the
public way the executor itself watches it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import os, sys, threading, time
import psutil
from service.jobs.executor import init_ray
from service.settings import Settings
assert "ray" not in sys.modules

settings = Settings(_env_file=None, ray_address=None, ray_num_cpus=1, ray_object_store_bytes=128 << 20)
started = []
t = threading.Thread(target=lambda: started.append(init_ray(settings)))
t.start(); t.join()
assert started == [True], started
import ray
print(f"gcs {ray.get_runtime_context().gcs_address}", flush=True)
time.sleep(2)  # the starting thread is gone; the kernel acts on that at once

@ray.remote
def answer():
    return 42

print(f"answer {ray.get(answer.remote(), timeout=30)}", flush=True)

# Killed from outside after all: the dispatcher's liveness probe names what died.
from service.jobs.executor import local_ray_dead
assert local_ray_dead() == [], local_ray_dead()
raylet = next(p for p in psutil.Process().children() if p.name() == "raylet")
raylet.kill(); raylet.wait(10)
print(f"dead {local_ray_dead()}", flush=True)  # one write: Ray's log thread prints too
os._exit(0)  # ray.shutdown() would wait on the dead raylet
"""


def test_local_ray_survives_the_thread_that_started_it_on_loopback_and_its_death_is_seen(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env["SURFRECON_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                          timeout=150)
    assert proc.returncode == 0 and "answer 42" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "dead ['raylet']" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "gcs 127.0.0.1:" in proc.stdout, proc.stdout[-2000:]
