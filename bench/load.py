"""Load benchmark: a few hundred small jobs end to end, with 50 SSE streams held open.

Starts ``surfrecon serve`` as its own process (embedded defaults: SQLite, local artifacts, a
local Ray; or ``--url`` to load an existing deployment), uploads one 3,000-point cloud, then at
once

* submits ``--jobs`` Poisson (fast) jobs over it (``POST /v1/jobs``, JSON, ``--concurrency``
  at a time; every 10th as multipart with the file, validated on arrival),
* holds ``--sse`` Server-Sent Events streams on the first jobs until each ends,
* reads status (``GET /v1/jobs/{id}``) and lists (``GET /v1/jobs?limit=50``) in a loop,

and, once every job is final, downloads every artifact and checks it against the sha256 and
size the job recorded. Prints a Markdown table: throughput, p50/p99 latency per request kind,
final states and the integrity check.

    python bench/load.py [--jobs 300] [--sse 50] [--ray-cpus 2] [--url http://host:8000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from _server import free_port, start_server

SPEC = {"method": "poisson", "preset": "fast", "formats": ["ply"]}
FINAL = {"succeeded", "failed", "canceled"}
DEADLINE_S = 1800.0
"""The whole run gives up after this long."""


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def _cloud(path: Path, n: int = 3000) -> bytes:
    rng = np.random.default_rng(0)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    np.savetxt(path, p * [1.0, 0.8, 0.6], fmt="%.6f")
    return path.read_bytes()


async def _timed(bucket: list[float], coro):
    t = time.perf_counter()
    r = await coro
    bucket.append(time.perf_counter() - t)
    return r


class _Client:
    """An httpx client whose GETs retry once when a pooled keep-alive connection was closed by
    the server just as it was reused (a race of HTTP/1.1 keep-alive, not a server failure);
    retries are counted and reported."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.inner, self.retries = client, 0

    async def get(self, *a, **kw) -> httpx.Response:
        try:
            return await self.inner.get(*a, **kw)
        except httpx.RemoteProtocolError:
            self.retries += 1
            return await self.inner.get(*a, **kw)

    def post(self, *a, **kw):
        return self.inner.post(*a, **kw)

    def stream(self, *a, **kw):
        return self.inner.stream(*a, **kw)


class Load:
    def __init__(self, client: httpx.AsyncClient, args) -> None:
        self.c, self.args = _Client(client), args
        self.lat: dict[str, list[float]] = {"submit": [], "status": [], "list": [], "sse_first_event": []}
        self.errors: Counter = Counter()
        self.ids: list[str] = []
        self.sse_events = 0
        self.sse_done = 0
        self.done = asyncio.Event()

    async def submit_all(self, upload_id: str, cloud: bytes) -> None:
        sem = asyncio.Semaphore(self.args.concurrency)

        async def one(i: int) -> None:
            async with sem:
                if i % 10 == 9:
                    req = self.c.post("/v1/jobs", files={"file": ("cloud.xyz", cloud)},
                                      data={"spec": json.dumps(SPEC)})
                else:
                    req = self.c.post("/v1/jobs", json={"spec": SPEC, "upload_id": upload_id})
                r = await _timed(self.lat["submit"], req)
                if r.status_code in (200, 202):
                    self.ids.append(r.json()["id"])
                else:
                    self.errors[f"submit {r.status_code}"] += 1

        await asyncio.gather(*(one(i) for i in range(self.args.jobs)))

    async def sse(self, job_id: str) -> None:
        t0, first = time.perf_counter(), True
        try:
            async with self.c.stream("GET", f"/v1/jobs/{job_id}/events",
                                     timeout=httpx.Timeout(30, read=DEADLINE_S)) as r:
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        self.sse_events += 1
                        if first:
                            self.lat["sse_first_event"].append(time.perf_counter() - t0)
                            first = False
            self.sse_done += 1
        except httpx.HTTPError as e:
            self.errors[f"sse {type(e).__name__}"] += 1

    async def readers(self) -> None:
        rng = np.random.default_rng(1)
        while not self.done.is_set():
            if self.ids:
                job_id = self.ids[int(rng.integers(len(self.ids)))]
                r = await _timed(self.lat["status"], self.c.get(f"/v1/jobs/{job_id}"))
                if r.status_code != 200:
                    self.errors[f"status {r.status_code}"] += 1
            r = await _timed(self.lat["list"], self.c.get("/v1/jobs", params={"limit": 50}))
            if r.status_code != 200:
                self.errors[f"list {r.status_code}"] += 1
            await asyncio.sleep(0.02)

    async def wait_final(self, deadline: float) -> dict[str, dict]:
        pending, final = set(self.ids), {}
        while pending and time.monotonic() < deadline:
            for job_id in list(pending)[:200]:
                job = (await self.c.get(f"/v1/jobs/{job_id}")).json()
                if job["status"] in FINAL:
                    final[job_id] = job
                    pending.discard(job_id)
            await asyncio.sleep(0.5)
        return final

    async def verify(self, jobs: dict[str, dict]) -> tuple[int, int]:
        """Download every artifact; returns (artifacts checked, mismatches)."""
        checked = bad = 0
        sem = asyncio.Semaphore(8)

        async def one(job_id: str, art: dict) -> None:
            nonlocal checked, bad
            async with sem:
                body = (await self.c.get(f"/v1/jobs/{job_id}/artifacts/{art['name']}")).content
            checked += 1
            if len(body) != art["size"] or hashlib.sha256(body).hexdigest() != art["sha256"]:
                bad += 1

        await asyncio.gather(*(one(j, a) for j, job in jobs.items() for a in job["artifacts"]))
        return checked, bad


async def run(url: str, args, data: Path) -> None:
    cloud = _cloud(data / "cloud.xyz")
    limits = httpx.Limits(max_connections=args.sse + 40, max_keepalive_connections=args.sse + 40)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        up = (await client.post("/v1/uploads", files={"file": ("cloud.xyz", cloud)})).json()
        load = Load(client, args)
        deadline = time.monotonic() + DEADLINE_S
        t0 = time.perf_counter()
        readers = [asyncio.create_task(load.readers()) for _ in range(args.readers)]
        submitting = asyncio.create_task(load.submit_all(up["id"], cloud))
        while len(load.ids) < min(args.sse, args.jobs) and not submitting.done():
            await asyncio.sleep(0.05)
        streams = [asyncio.create_task(load.sse(j)) for j in load.ids[: args.sse]]
        await submitting
        t_submitted = time.perf_counter() - t0
        jobs = await load.wait_final(deadline)
        t_all = time.perf_counter() - t0
        load.done.set()
        await asyncio.gather(*readers)
        await asyncio.wait_for(asyncio.gather(*streams), timeout=60)
        checked, bad = await load.verify({j: v for j, v in jobs.items() if v["status"] == "succeeded"})

    states = Counter(j["status"] for j in jobs.values())
    lost = len(load.ids) - len(jobs)
    print(f"\n## surfrecon load: {args.jobs} Poisson (fast) jobs on a 3,000-point cloud\n")
    print(f"{platform.node()}, {os.cpu_count()} cores, Ray CPUs {args.ray_cpus}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| measure | value |\n|---|---|")
    print(f"| jobs submitted / reached a final state | {len(load.ids)} / {len(jobs)} (not final: {lost}) |")
    print(f"| final states | {dict(states)} |")
    print(f"| all submitted in | {t_submitted:.1f} s ({len(load.ids) / t_submitted:.1f} submissions/s) |")
    print(f"| all final in | {t_all:.1f} s |")
    print(f"| throughput | {states['succeeded'] / t_all:.2f} jobs/s |")
    print(f"| SSE streams held / ended after the final state | {min(args.sse, len(load.ids))} / {load.sse_done} "
          f"({load.sse_events} events) |")
    print(f"| artifacts verified (sha256 and size as recorded) | {checked - bad} of {checked} |")
    print(f"| request errors | {dict(load.errors) or 'none'} (GETs retried on a closed keep-alive: "
          f"{load.c.retries}) |")
    print("\n| request | n | p50 ms | p99 ms |\n|---|---|---|---|")
    for name, vals in load.lat.items():
        print(f"| {name} | {len(vals)} | {_pct(vals, 50):.1f} | {_pct(vals, 99):.1f} |")
    if lost or bad or states["succeeded"] != len(load.ids):
        print("\nFAILED: not every job succeeded with intact artifacts")
        sys.exit(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--sse", type=int, default=50, help="SSE streams held open")
    ap.add_argument("--readers", type=int, default=4, help="concurrent status/list readers")
    ap.add_argument("--concurrency", type=int, default=16, help="submissions in flight")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--url", default=None, help="load this server instead of starting one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="surfrecon-load-") as tmp:
        data = Path(tmp)
        if args.url:
            asyncio.run(run(args.url, args, data))
            return
        port = free_port()
        try:
            proc = start_server(data, port, {"SURFRECON_RAY_NUM_CPUS": str(args.ray_cpus),
                                             "SURFRECON_MAX_QUEUED_PER_KEY": "100000",
                                             "SURFRECON_JOB_NUM_CPUS": "1"}, new_session=True)
        except RuntimeError as e:
            sys.exit(str(e))
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                asyncio.run(run(url, args, data))
            except (httpx.HTTPError, OSError):
                code = proc.poll()
                print(f"server {'exited with ' + str(code) if code is not None else 'still running'}; "
                      "its log ends:\n" + (data / "serve.log").read_text()[-4000:], file=sys.stderr)
                raise
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


if __name__ == "__main__":
    main()
