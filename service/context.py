"""The per-app bundle of long-lived objects that routes and services share."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from service.jobs.dispatcher import Dispatcher
from service.jobs.events import EventHub
from service.jobs.store import JobStore
from service.settings import Settings
from service.storage import ArtifactStore


@dataclass
class ServiceContext:
    settings: Settings
    store: JobStore
    artifacts: ArtifactStore
    hub: EventHub
    validation_limiter: anyio.CapacityLimiter
    dispatcher: Dispatcher | None = None
    """None in an API-only replica (``dispatcher_enabled=false``)."""

    def wake_dispatcher(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()
