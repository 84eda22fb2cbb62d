"""The SSE event hub: one poll for all watchers, events in order, streams end on the final state,
and a watcher never misses a change that lands between its read and its subscription."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from fastapi.sse import format_sse_event

from service.jobs.events import EventHub, StreamEvent, job_stream
from service.jobs.store import JobStore, NewJob


def _wire(e: StreamEvent) -> str:
    """The bytes FastAPI's EventSourceResponse writes for the event (service.api.jobs frames it)."""
    return format_sse_event(data_str=e.data, event=e.event, id=e.id, retry=e.retry, comment=e.comment).decode()


def _parse(items: list[StreamEvent]) -> list[tuple[str, dict]]:
    out = []
    for chunk in map(_wire, items):
        fields = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def _job(store: JobStore):
    (job,), _, _ = store.create_jobs(owner="o", jobs=[NewJob(spec={}, input={})], max_attempts=3, max_queued=100)
    return job


def _render(job) -> dict:
    return {"id": job.id, "status": job.status, "progress": job.progress, "version": job.version}


def test_stream_reports_progress_and_ends_with_the_final_state(store: JobStore):
    job = _job(store)

    def worker() -> None:
        time.sleep(0.2)
        store.claim_start(job_id=job.id, attempt=1, worker={})
        for pct in (10.0, 50.0, 90.0):
            time.sleep(0.15)
            store.report_progress(job_id=job.id, attempt=1, stage="fit", progress=pct)
        time.sleep(0.5)  # many polls' time: the 90 % must be seen before the end, even on a busy machine
        store.finish(job_id=job.id, attempt=1, status="succeeded", metrics={}, artifacts=[])

    async def main() -> list[str]:
        hub = EventHub(store, poll_s=0.03)
        hub.start()
        try:
            chunks = [c async for c in job_stream(hub, job, _render, keepalive_s=5)]
            assert hub.listeners == 0
            return chunks
        finally:
            await hub.stop()

    t = threading.Thread(target=worker)
    t.start()
    chunks = asyncio.run(asyncio.wait_for(main(), 30))
    t.join()
    events = _parse(chunks)
    assert events[0] == ("state", _render(job))
    assert events[-1][0] == "state" and events[-1][1]["status"] == "succeeded"
    assert ("state", "running") in [(e, d["status"]) for e, d in events]
    progress = [d["progress"] for e, d in events if e == "progress"]
    assert progress == sorted(progress) and progress[-1] == 90.0
    versions = [d.get("version") for e, d in events if e == "state"]
    assert versions == sorted(versions)


def test_late_subscriber_gets_the_change_it_raced_with(store: JobStore):
    stale = _job(store)  # the row a second client read before the job finished
    store.claim_start(job_id=stale.id, attempt=1, worker={})
    store.finish(job_id=stale.id, attempt=1, status="failed", error={"code": "x", "message": "y"})

    async def main() -> list[str]:
        hub = EventHub(store, poll_s=0.03)
        hub.start()
        try:
            first = hub.subscribe(stale)  # an earlier watcher: the hub polls and sees the final row
            await asyncio.wait_for(first.get(), 5)
            # No further change will ever happen; the late stream must still end.
            return [c async for c in job_stream(hub, stale, _render, keepalive_s=60)]
        finally:
            await hub.stop()

    events = _parse(asyncio.run(asyncio.wait_for(main(), 10)))
    assert [(e, d["status"]) for e, d in events] == [("state", "queued"), ("state", "failed")]


def test_idle_stream_sends_a_retry_hint_then_keepalive_comments(store: JobStore):
    job = _job(store)  # stays queued: nothing but keep-alives after its first state

    async def main() -> list[StreamEvent]:
        hub = EventHub(store, poll_s=0.03)
        hub.start()
        try:
            out = []
            async for e in job_stream(hub, job, _render, keepalive_s=0.05):
                out.append(e)
                if len(out) == 4:
                    break
            return out
        finally:
            await hub.stop()

    items = asyncio.run(asyncio.wait_for(main(), 10))
    wire = [_wire(e) for e in items]
    assert wire[0] == "retry: 2000\n\n"
    assert wire[1] == f"event: state\ndata: {json.dumps(_render(job), separators=(',', ':'))}\nid: {job.version}\n\n"
    assert wire[2:] == [": keepalive\n\n"] * 2


def test_one_query_per_tick_for_many_watchers(store: JobStore, monkeypatch):
    jobs = [_job(store) for _ in range(20)]
    calls = []
    real = store.snapshots
    monkeypatch.setattr(store, "snapshots", lambda ids: calls.append(len(ids)) or real(ids))

    async def main() -> float:
        hub = EventHub(store, poll_s=0.05)
        for j in jobs:
            for _ in range(3):
                hub.subscribe(j)
        assert hub.listeners == 60
        t0 = time.monotonic()
        hub.start()
        while len(calls) < 4:  # a few ticks, however slow the machine
            await asyncio.sleep(0.01)
        await hub.stop()
        return time.monotonic() - t0

    elapsed = asyncio.run(asyncio.wait_for(main(), 30))
    # Every query asks for all 20 jobs at once, and there is at most one per tick (per-watcher
    # queries would make 60 per tick).
    assert set(calls) == {20} and len(calls) <= elapsed / 0.05 + 2, (calls, elapsed)
