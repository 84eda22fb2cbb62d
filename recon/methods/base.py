"""The method table: what a reconstruction method is, and the registry every list of methods reads.

A method is one module of this package that calls :func:`register_method` once with a
:class:`Method`: its name, the input it takes (``points``: a point cloud, or ``images``: posed
images), the field it fits (``signed``, ``unsigned`` or ``none`` when it builds its mesh
directly), the extractors it accepts (the first is its default), its presets, a short label and
a one-line description for people, and the callable that reconstructs. The job spec's choices
and validation, the pipeline's dispatch, the CLI, the client, the API's descriptions and the
web page's list are all generated from the table.

A method's ``reconstruct(data, ctx)`` gets the loaded input in the normalised frame (a
:class:`~recon.io.pointcloud.PointCloud` for ``points``, a :class:`~recon.io.dataset.ViewSplit`
for ``images``) and a :class:`MethodContext`, and returns a :class:`Reconstruction`: the mesh in
the normalised frame plus the method's own metrics. Loading, finishing the mesh, the shared
metrics and export are the pipeline's.

The table is cheap to import: the thin CLI client builds its choices from it without loading
torch. So the method modules import their fitters inside ``reconstruct`` and build their presets
(which hold the fitters' configs) on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from recon.progress import CancelToken, ProgressEvent, ProgressFn, Stage

if TYPE_CHECKING:
    import torch

    from meshing.mesh import Mesh

InputKind = Literal["points", "images"]
FieldKind = Literal["signed", "unsigned", "none"]
INPUT_KINDS: tuple[str, ...] = ("points", "images")
FIELD_KINDS: tuple[str, ...] = ("signed", "unsigned", "none")
PRESET_NAMES: tuple[str, ...] = ("fast", "balanced", "quality")
"""Every method has these presets: fast (seconds, previews and tests), balanced (the default),
quality (minutes, more detail)."""


@dataclass(frozen=True)
class Preset:
    """One preset of one method."""

    fit: Any
    """The method's frozen config (e.g. ``DigsConfig``); the job's seed replaces its ``seed``."""
    resolution: int | None = None
    """Default extraction resolution over the normalised cube (None: the method meshes itself)."""


@dataclass(frozen=True)
class Reconstruction:
    """What a method returns."""

    mesh: Mesh
    """The mesh in the normalised frame (the pipeline maps it back to the input's)."""
    metrics: Callable[[], dict] = dict
    """The method's own metrics (e.g. held-out views), computed in the pipeline's metrics stage
    after the mesh is finished."""
    artifacts: Callable[[Path], dict[str, Path]] = lambda out_dir: {}
    """Writes the method's own artifacts (e.g. ``views.png``) into ``out_dir`` after its metrics;
    returns name -> path."""
    from_field: bool = True
    """The mesh was extracted from a fitted field, whose floating fragments the job's
    ``min_component_fraction`` drops. False for meshes built from the points themselves (screened
    Poisson): every piece of those is where the data is (dropping the small pieces of a bench
    armadillo with holes cost 3% recall and 1.4x Chamfer)."""


@dataclass
class MethodContext:
    """What a method's ``reconstruct`` may use besides its input: the job's choices, resolved."""

    preset_name: str
    """Name of the job's preset."""
    preset: Preset
    """The method's preset of that name."""
    seed: int
    """Seed of the fit."""
    resolution: int | None
    """Extraction resolution asked for, or None for the preset's."""
    extractor: str | None
    """Extractor to use: the job's choice or the method's default (None for ``none`` fields)."""
    max_fit_points: int | None
    """Points used for fitting (point methods), or None for the config's own limit."""
    device: torch.device
    """Where to fit."""
    progress: ProgressFn
    """Progress sink (stage 'fit' from the fit loop, 'extract' around extraction...)."""
    cancel: CancelToken | None
    """Cancellation token, checked between steps and stages."""
    checkpoint_path: Path | None
    """Where the fit saves and resumes its checkpoint (None: no checkpoints)."""
    bbox: tuple[float, ...] | None = None
    """Image methods: the region to reconstruct, [xmin, ymin, zmin, xmax, ymax, zmax] in the
    input's frame, or None to find it from the data."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per named part of the method ('fit', 'extract'), reported in the metrics."""

    def check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def fit_config(self) -> Any:
        """The preset's config with the job's seed, and ``max_points`` from ``max_fit_points``."""
        cfg = replace(self.preset.fit, seed=self.seed)
        if self.max_fit_points:
            cfg = replace(cfg, max_points=self.max_fit_points)
        return cfg

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time the block as ``timings[name]``."""
        t = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - t

    @contextmanager
    def extract_stage(self) -> Iterator[None]:
        """The 'extract' stage: a cancellation check, progress 0/1 and 1/1 around the block, timed."""
        self.check_cancel()
        with self.timed("extract"):
            self.progress(ProgressEvent(Stage.EXTRACT, 0, 1))
            yield
            self.progress(ProgressEvent(Stage.EXTRACT, 1, 1))


@dataclass(frozen=True)
class Method:
    """One entry of the method table."""

    name: str
    """Identifier in job specs, the CLI and the API (lower case)."""
    label: str
    """A few plain words for the web page's list, e.g. "Smooth closed surface (neural)"."""
    description: str
    """One sentence for people: what it is for (CLI help, the web page, ``GET /v1/methods``)."""
    input_kind: InputKind
    """``points`` (a point cloud) or ``images`` (posed images)."""
    field_kind: FieldKind
    """The field the method fits: ``signed``, ``unsigned``, or ``none`` (it meshes directly)."""
    extractors: tuple[str, ...]
    """Mesh extractors it accepts, its default first; empty for ``none`` fields."""
    make_presets: Callable[[], Mapping[str, Preset]]
    """Builds its settings for every name in ``PRESET_NAMES`` (called once, on first use)."""
    reconstruct: Callable[[Any, MethodContext], Reconstruction]
    """``(input in the normalised frame, context) -> Reconstruction``."""
    order: int
    """Position in every list of methods (CLI choices, API enum, web page), ascending."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"expected a lower-case identifier as method name, got {self.name!r}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"method {self.name!r}: expected input_kind in {INPUT_KINDS}, got {self.input_kind!r}")
        if self.field_kind not in FIELD_KINDS:
            raise ValueError(f"method {self.name!r}: expected field_kind in {FIELD_KINDS}, got {self.field_kind!r}")
        if (self.field_kind == "none") != (not self.extractors):
            raise ValueError(f"method {self.name!r}: a method has extractors exactly when it fits a field")

    @cached_property
    def presets(self) -> dict[str, Preset]:
        """Preset name -> its settings (built on first access)."""
        presets = dict(self.make_presets())
        if set(presets) != set(PRESET_NAMES):
            raise ValueError(f"method {self.name!r}: expected presets {PRESET_NAMES}, got {tuple(presets)}")
        return presets

    @property
    def default_extractor(self) -> str | None:
        """The extractor used when a job names none (None for methods that mesh directly)."""
        return self.extractors[0] if self.extractors else None


METHODS: dict[str, Method] = {}
"""Method name -> entry, filled by the modules of this package as they are imported."""


def register_method(method: Method) -> Method:
    """Add ``method`` to the table; a second method of the same name is an error."""
    if method.name in METHODS:
        raise KeyError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The method called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {method_names()}") from None


def method_names(input_kind: str | None = None) -> list[str]:
    """Names of the registered methods in list order, optionally only those taking ``input_kind``."""
    ordered = sorted(METHODS.values(), key=lambda m: (m.order, m.name))
    return [m.name for m in ordered if input_kind is None or m.input_kind == input_kind]


def describe_methods() -> str:
    """``name: description`` of every method, in list order (help texts)."""
    return "; ".join(f"{n}: {METHODS[n].description.rstrip('.')}" for n in method_names())


def default_extractors() -> str:
    """``marching_cubes for digs, dualmesh_udf for udf, ...``: each fitting method's default."""
    return ", ".join(f"{METHODS[n].default_extractor} for {n}" for n in method_names() if METHODS[n].extractors)


def quoted(names: list[str], word: str = "method", quote: str = "'") -> str:
    """``method 'neus'`` or ``methods 'a', 'b' and 'c'``, for messages and descriptions."""
    q = [f"{quote}{n}{quote}" for n in names]
    if len(q) == 1:
        return f"{word} {q[0]}"
    return f"{word}s {', '.join(q[:-1])} and {q[-1]}"
