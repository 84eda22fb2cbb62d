"""``surfrecon submit | jobs | cancel``: a command-line client of the HTTP API.

``submit`` sends one job per file (or one batch with ``--batch``), each with its own
Idempotency-Key so a retried request never queues a job twice; with ``--wait`` it follows
every job's Server-Sent Events stream with a progress bar, downloads the artifacts and exits
non-zero if any job did not succeed. Server and key also come from ``SURFRECON_SERVER`` and
``SURFRECON_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from service.jobs.states import FINAL_STATUSES, JobStatus

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ApiError(Exception):
    """A problem+json answer (or an unreachable server)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class Client:
    """Thin synchronous wrapper over the /v1 API."""

    def __init__(self, server: str, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _check(self, r: httpx.Response) -> httpx.Response:
        if r.status_code >= 400:
            try:
                body = r.json()
                raise ApiError(r.status_code, body.get("code", "error"), body.get("detail", r.text))
            except (ValueError, AttributeError):
                raise ApiError(r.status_code, "error", r.text[:300]) from None
        return r

    def _post_retrying(self, url: str, key: str, **kwargs: Any) -> httpx.Response:
        """POST with one retry on a transport error; the Idempotency-Key makes the retry safe."""
        for attempt in (1, 2):
            files = kwargs.pop("open_files", None)
            try:
                with ExitStack() as stack:
                    opened = [(name, (Path(p).name, stack.enter_context(open(p, "rb")))) for name, p in files] \
                        if files else None
                    return self._check(self.http.post(url, headers={"Idempotency-Key": key}, files=opened,
                                                      **kwargs))
            except httpx.TransportError:
                if attempt == 2:
                    raise
                kwargs["open_files"] = files
                time.sleep(1.0)
        raise AssertionError("unreachable")

    def submit(self, path: Path, spec: dict, *, gt: Path | None = None) -> dict:
        files = [("file", path)] + ([("gt_file", gt)] if gt else [])
        return self._post_retrying("/v1/jobs", uuid.uuid4().hex, open_files=files,
                                   data={"spec": json.dumps(spec)}).json()

    def submit_batch(self, paths: list[Path], spec: dict) -> dict:
        return self._post_retrying("/v1/batches", uuid.uuid4().hex, open_files=[("file", p) for p in paths],
                                   data={"spec": json.dumps(spec)}).json()

    def job(self, job_id: str) -> dict:
        return self._check(self.http.get(f"/v1/jobs/{job_id}")).json()

    def jobs(self, *, status: str | None = None, limit: int = 50, cursor: str | None = None) -> dict:
        params = {k: v for k, v in {"status": status, "limit": limit, "cursor": cursor}.items() if v is not None}
        return self._check(self.http.get("/v1/jobs", params=params)).json()

    def cancel(self, job_id: str) -> dict:
        return self._check(self.http.post(f"/v1/jobs/{job_id}/cancel")).json()

    def events(self, job_id: str) -> Iterator[tuple[str, dict]]:
        """(event, data) pairs from the job's SSE stream until it closes."""
        with connect_sse(self.http, "GET", f"/v1/jobs/{job_id}/events",
                         timeout=httpx.Timeout(10.0, read=None)) as source:
            if source.response.status_code >= 400:
                source.response.read()
                self._check(source.response)
            for sse in source.iter_sse():
                if sse.data:  # the retry hint has none; keep-alive comments are not events
                    yield sse.event, sse.json()

    def follow(self, job_id: str, on_update) -> dict:
        """Call ``on_update(payload)`` for every event until the job ends; returns the final job.
        Reconnects when the stream drops (e.g. the server restarted)."""
        failures = 0
        while True:
            try:
                for event, payload in self.events(job_id):
                    on_update(payload)
                    if event == "state" and payload.get("status") in FINAL_STATUSES:
                        return payload
                failures = 0
            except httpx.TransportError:
                failures += 1
                if failures > 5:
                    raise
                time.sleep(min(10.0, 2.0 ** failures))
            job = self.job(job_id)
            if job["status"] in FINAL_STATUSES:
                return job

    def download(self, job: dict, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for art in job["artifacts"]:
            dest = out_dir / art["name"]
            with self.http.stream("GET", art["url"]) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                with open(dest, "wb") as f:
                    f.writelines(r.iter_bytes(1 << 20))
            written.append(dest)
        return written


# ---- commands --------------------------------------------------------------------------------

def _client(args: argparse.Namespace) -> Client:
    return Client(args.server, args.api_key)


def _spec(args: argparse.Namespace) -> dict:
    spec: dict[str, Any] = json.loads(args.spec) if args.spec else {}
    for name in ("method", "extractor", "preset", "resolution", "seed", "device", "bbox"):
        value = getattr(args, name)
        if value is not None:
            spec[name] = value
    if args.format:
        spec["formats"] = [f for item in args.format for f in item.split(",") if f]
    return spec


def cmd_submit(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    if args.batch and args.gt:
        print("error: --gt applies to single jobs, not to --batch", file=sys.stderr)
        return EXIT_USAGE
    try:
        spec = _spec(args)
    except json.JSONDecodeError as e:
        print(f"error: --spec is not JSON: {e}", file=sys.stderr)
        return EXIT_USAGE
    client = _client(args)
    try:
        gt = Path(args.gt) if args.gt else None
        if args.batch:
            batch = client.submit_batch(paths, spec)
            jobs = batch["jobs"]
            print(f"batch {batch['id']}: {len(jobs)} jobs")
        else:
            jobs = [client.submit(p, spec, gt=gt) for p in paths]
        for p, job in zip(paths, jobs):
            print(f"{job['id']}  {job['status']:<9} {p}")
        if not args.wait:
            return EXIT_OK
        finals = _follow_all(client, jobs, quiet=args.quiet)
        return _report(client, paths, finals, Path(args.output) if args.output else None)
    except ApiError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE if e.status in (400, 404, 409, 413, 415, 422) else EXIT_FAILED
    except (httpx.HTTPError, OSError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()


def _follow_all(client: Client, jobs: list[dict], *, quiet: bool) -> list[dict]:
    from tqdm import tqdm

    finals: list[dict | None] = [None] * len(jobs)
    bars = [tqdm(total=100, position=i, desc=f"{j['input']['name'][:20]:>20}", file=sys.stderr, leave=True,
                 disable=quiet, bar_format="{desc} {bar} {n:5.1f}%{postfix}") for i, j in enumerate(jobs)]
    lock = threading.Lock()

    def watch(i: int) -> None:
        def update(payload: dict) -> None:
            with lock:
                bars[i].n = float(payload.get("progress", 0.0))
                bars[i].set_postfix_str(f"{payload.get('status')}:{payload.get('stage')}", refresh=True)
        try:
            finals[i] = client.follow(jobs[i]["id"], update)
        except (ApiError, httpx.HTTPError) as e:
            finals[i] = {**jobs[i], "status": JobStatus.FAILED, "error": {"code": "client_error", "message": str(e)}}

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b in bars:
        b.close()
    return [f for f in finals if f is not None]


def _report(client: Client, paths: list[Path], finals: list[dict], out: Path | None) -> int:
    failed = 0
    stems = [p.stem for p in paths]
    for p, job in zip(paths, finals):
        if job["status"] != JobStatus.SUCCEEDED:
            failed += 1
            err = job.get("error") or {}
            print(f"{job['id']}  {job['status']:<9} {p}: {err.get('code', '')}: {err.get('message', '')}")
            continue
        line = f"{job['id']}  succeeded {p}"
        if out is not None:
            # One folder per file; the job id tells apart files with the same stem.
            dest = out if len(paths) == 1 else out / (p.stem if stems.count(p.stem) == 1 else f"{p.stem}-{job['id'][:8]}")
            written = client.download(job, dest)
            line += f" -> {', '.join(str(w) for w in written)}"
        print(line)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        if args.job_id:
            print(json.dumps(client.job(args.job_id), indent=2))
            return EXIT_OK
        page = client.jobs(status=args.status, limit=args.limit)
        print(f"{'id':<32}  {'status':<9} {'stage':<10} {'progress':>8}  {'created':<20} input")
        for j in page["items"]:
            print(f"{j['id']:<32}  {j['status']:<9} {j['stage']:<10} {j['progress']:>7.1f}%  "
                  f"{j['created_at'][:19]:<20} {j['input']['name']}")
        if page["next_cursor"]:
            print(f"(more: showing the newest {args.limit})")
        return EXIT_OK
    except ApiError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE if e.status == 404 else EXIT_FAILED
    except httpx.HTTPError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    code = EXIT_OK
    try:
        for job_id in args.job_ids:
            try:
                job = client.cancel(job_id)
                state = "canceled" if job["status"] == JobStatus.CANCELED else "cancel requested"
                print(f"{job_id}  {state}")
            except ApiError as e:
                print(f"{job_id}  error: {e}", file=sys.stderr)
                code = EXIT_FAILED
        return code
    except httpx.HTTPError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=os.environ.get("SURFRECON_SERVER", "http://127.0.0.1:8000"),
                   help="API base URL (env SURFRECON_SERVER; default http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=os.environ.get("SURFRECON_API_KEY"),
                   help="API key (env SURFRECON_API_KEY)")


def add_parsers(sub) -> None:
    """Register ``submit``, ``jobs`` and ``cancel`` on the CLI's subparsers."""
    from recon.extraction import EXTRACTORS
    from recon.methods import PRESET_NAMES, method_names

    images = " or ".join(f"--method {m}" for m in method_names("images"))
    s = sub.add_parser("submit", help="submit point clouds (or image-set zips) to a surfrecon server")
    s.add_argument("files", nargs="+", help=f"point cloud files (or, with {images}, .zip image sets), one job each")
    _connection_args(s)
    s.add_argument("--method", choices=method_names(), default=None)
    s.add_argument("--extractor", choices=list(EXTRACTORS), default=None)
    s.add_argument("--preset", choices=PRESET_NAMES, default=None)
    s.add_argument("--format", action="append", default=None, help="mesh format(s): ply obj glb stl (repeat or comma)")
    s.add_argument("--resolution", type=int, default=None)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    s.add_argument("--bbox", type=float, nargs=6, default=None, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help=f"{images}: the region to reconstruct, in the input's frame (default: found from the data)")
    s.add_argument("--spec", default=None, help="a JSON JobSpec; the options above override its fields")
    s.add_argument("--gt", default=None, help="ground-truth mesh for metrics (one job per file only)")
    s.add_argument("--batch", action="store_true", help="submit all files as one batch")
    s.add_argument("--wait", action="store_true", help="follow progress, download artifacts, fail if any job failed")
    s.add_argument("-o", "--output", default=None, help="with --wait: download artifacts here (DIR/<file stem>/ for several)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_submit)

    j = sub.add_parser("jobs", help="list jobs on a surfrecon server (or show one)")
    j.add_argument("job_id", nargs="?", default=None, help="show this job as JSON")
    _connection_args(j)
    j.add_argument("--status", choices=list(JobStatus), default=None)
    j.add_argument("--limit", type=int, default=20)
    j.set_defaults(func=cmd_jobs)

    c = sub.add_parser("cancel", help="cancel jobs on a surfrecon server")
    c.add_argument("job_ids", nargs="+", metavar="ID")
    _connection_args(c)
    c.set_defaults(func=cmd_cancel)
