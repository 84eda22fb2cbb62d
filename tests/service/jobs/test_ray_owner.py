"""A local Ray outlives the thread that started it.

Ray starts its GCS and raylet with PR_SET_PDEATHSIG, which fires when the forking *thread*
ends. The service starts Ray from pool threads that are later retired, so without care the
whole local Ray died at a random moment and its jobs waited forever. The check runs in a fresh
interpreter: this test process already has its session Ray.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import os, threading, time
import ray
from service.jobs.executor import init_ray
from service.settings import Settings

settings = Settings(_env_file=None, ray_address=None, ray_num_cpus=1, ray_object_store_bytes=128 << 20)
started = []
t = threading.Thread(target=lambda: started.append(init_ray(settings)))
t.start(); t.join()
assert started == [True], started
time.sleep(2)  # the starting thread is gone; the kernel acts on that at once

@ray.remote
def answer():
    return 42

print("answer", ray.get(answer.remote(), timeout=30), flush=True)

# Killed from outside after all: the dispatcher's liveness probe names what died.
from service.jobs.executor import local_ray_dead
from ray._private import worker
assert local_ray_dead() == [], local_ray_dead()
raylet = next(p for kind, p in worker._global_node.live_processes() if kind == "raylet")
raylet.kill(); raylet.wait(10)
print("dead", local_ray_dead(), flush=True)
os._exit(0)  # ray.shutdown() would wait on the dead raylet
"""


def test_local_ray_survives_the_thread_that_started_it_and_its_death_is_seen(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("SURFRECON_")}
    env["SURFRECON_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0 and "answer 42" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "dead ['raylet']" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
