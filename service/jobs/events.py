"""Progress events for Server-Sent Events streams.

Workers write progress to the job table (it is the source of truth, and workers may run on
other machines), so one ``EventHub`` per API process polls the table for *all* jobs being
watched, one query per tick however many clients listen, and fans changed rows out to the
subscribers' queues. A stream ends after sending the job's final state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio

from service.jobs.models import Job
from service.jobs.states import FINAL_STATUSES
from service.jobs.store import JobStore

log = logging.getLogger(__name__)

QUEUE_SIZE = 64


class EventHub:
    """Polls watched jobs every ``poll_s`` and pushes changed rows to subscribers."""

    def __init__(self, store: JobStore, *, poll_s: float) -> None:
        self.store, self.poll_s = store, poll_s
        self._subs: dict[str, set[asyncio.Queue]] = {}
        self._latest: dict[str, Job] = {}
        """Newest row seen per watched job."""
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="surfrecon-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    @property
    def listeners(self) -> int:
        return sum(len(q) for q in self._subs.values())

    def subscribe(self, job: Job) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._subs.setdefault(job.id, set()).add(q)
        latest = self._latest.setdefault(job.id, job)
        if latest.version > job.version:  # changed between the caller's read and now
            q.put_nowait(latest)
        return q

    def unsubscribe(self, job_id: str, q: asyncio.Queue) -> None:
        subs = self._subs.get(job_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._subs[job_id]
                self._latest.pop(job_id, None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if not self._subs:
                continue
            try:
                rows = await anyio.to_thread.run_sync(self.store.snapshots, list(self._subs))
            except Exception:
                log.exception("event poll failed")
                continue
            for job_id, job in rows.items():
                known = self._latest.get(job_id)
                if job_id not in self._subs or (known is not None and job.version <= known.version):
                    continue
                self._latest[job_id] = job
                for q in list(self._subs[job_id]):
                    if q.full():  # a slow client: keep only the newest states
                        q.get_nowait()
                    q.put_nowait(job)


def progress_payload(job: Job) -> dict:
    """The small payload of a ``progress`` event."""
    return {"id": job.id, "status": job.status, "stage": job.stage, "progress": job.progress,
            "attempt": job.attempt}


@dataclass(frozen=True)
class StreamEvent:
    """One event of a job's stream, independent of HTTP (``service.api.jobs`` frames it as a
    Server-Sent Event): a named event with compact JSON data and an id, a retry hint, or a
    comment."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None


def _event(name: str, data: dict, version: int) -> StreamEvent:
    # Compact JSON, as the page and the CLI have always received it.
    return StreamEvent(event=name, id=str(version), data=json.dumps(data, default=str, separators=(",", ":")))


async def job_stream(hub: EventHub, job: Job, render: Callable[[Job], dict], *,
                     keepalive_s: float) -> AsyncIterator[StreamEvent]:
    """The events of one job's stream: a retry hint, its current state, then ``progress`` and
    ``state`` events, ending with the final ``state`` event; a ``keepalive`` comment after
    ``keepalive_s`` without a change. ``render`` turns a row into the payload of ``state`` events
    (the whole job); ``progress`` events carry id, status, stage, progress and attempt. Event
    ids are the row's version."""
    q = hub.subscribe(job)
    try:
        yield StreamEvent(retry=2000)
        yield _event("state", render(job), job.version)
        last_version, last_status = job.version, job.status
        while job.status not in FINAL_STATUSES:
            try:
                job = await asyncio.wait_for(q.get(), keepalive_s)
            except TimeoutError:
                yield StreamEvent(comment="keepalive")
                continue
            if job.version <= last_version:
                continue
            if job.status != last_status:
                yield _event("state", render(job), job.version)
            else:
                yield _event("progress", progress_payload(job), job.version)
            last_version, last_status = job.version, job.status
    finally:
        hub.unsubscribe(job.id, q)
