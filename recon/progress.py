"""Progress reporting and cooperative cancellation for long-running fits.

Fitters call ``progress(ProgressEvent(...))`` every few steps and ``cancel.raise_if_cancelled()``
between steps. Both are plain objects so that a CLI progress bar, a local worker and a Ray task
can all supply their own. ``Stage`` names every stage the pipeline reports; the service shows
them as the job's stage and the web page has words for each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from recon.strenum import StrEnum


class Cancelled(Exception):
    """Raised inside a fit when its cancel token was set."""


class Stage(StrEnum):
    """The stages of a reconstruction, in the order a job passes them; a method skips those it
    does not have (Poisson has 'normals' and 'poisson' instead of 'fit' and 'extract')."""

    LOAD = "load"
    """Reading, validating and normalising the input."""
    CLEAN = "clean"
    """auto: measuring the cloud, dropping outliers, smoothing noise, orienting normals."""
    NORMALS = "normals"
    """Poisson: estimating and orienting normals."""
    POISSON = "poisson"
    """Poisson: solving for the surface and trimming its low-density parts."""
    FIT = "fit"
    """Training a neural field (steps are optimiser steps)."""
    EXTRACT = "extract"
    """Meshing the field (marching cubes or DualMesh-UDF)."""
    METRICS = "metrics"
    """Measuring the mesh against the input and the ground truth."""
    EXPORT = "export"
    """Writing the mesh files and metrics.json."""


@dataclass(frozen=True)
class ProgressEvent:
    stage: Stage
    """Pipeline stage; a plain string is accepted if it names one (anything else is a ValueError)."""
    step: int
    """Steps done within the stage."""
    total: int
    """Steps the stage will take (>= 1)."""
    losses: dict[str, float] = field(default_factory=dict)
    """Latest loss terms by name (fit stage only)."""

    def __post_init__(self) -> None:
        # Listeners (the worker, the web page) know exactly these stages: refuse any other.
        object.__setattr__(self, "stage", Stage(self.stage))

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(1, self.total))


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """Progress sink that ignores everything."""


class CancelToken:
    """Thread-safe cancellation flag; ``check`` may also poll an external source (e.g. a DB row)."""

    def __init__(self, check: Callable[[], bool] | None = None) -> None:
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
