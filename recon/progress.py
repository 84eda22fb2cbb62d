"""Progress reporting and cooperative cancellation for long-running fits.

Fitters call ``progress(ProgressEvent(...))`` every few steps and ``cancel.raise_if_cancelled()``
between steps. Both are plain objects so that a CLI progress bar, a local worker and a Ray task
can all supply their own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional


class Cancelled(Exception):
    """Raised inside a fit when its cancel token was set."""


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    """Pipeline stage: 'load', 'fit', 'extract', 'metrics', 'export'."""
    step: int
    """Steps done within the stage."""
    total: int
    """Steps the stage will take (>= 1)."""
    losses: dict[str, float] = field(default_factory=dict)
    """Latest loss terms by name (fit stage only)."""

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.total))


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """Progress sink that ignores everything."""


class CancelToken:
    """Thread-safe cancellation flag; ``check`` may also poll an external source (e.g. a DB row)."""

    def __init__(self, check: Optional[Callable[[], bool]] = None) -> None:
        self._event = threading.Event()
        self._check = check

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self._check is not None and self._check():
            self._event.set()
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("canceled")
