"""Map point clouds into the [-1, 1]^3 cube the neural fields work in, and back; subsampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.io.pointcloud import PointCloud


@dataclass(frozen=True, eq=False)
class Normalization:
    """A uniform scale plus translation: ``unit = (world - center) / scale``.

    ``scale`` is the world length of one unit-cube unit. Being uniform, it keeps angles, so
    normals need no change, and distances convert by a single factor (``world = unit * scale``).
    """

    center: np.ndarray
    scale: float

    def __post_init__(self) -> None:
        center = np.array(self.center, dtype=np.float64).reshape(3)
        center.setflags(write=False)
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "scale", float(self.scale))
        if not (np.isfinite(center).all() and np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"invalid normalization center={center} scale={self.scale}")

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        """World (n, 3) -> unit-cube coordinates."""
        return (np.asarray(points, dtype=np.float64) - self.center) / self.scale

    def from_unit(self, points: np.ndarray) -> np.ndarray:
        """Unit-cube (n, 3) -> world coordinates."""
        return np.asarray(points, dtype=np.float64) * self.scale + self.center

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Normalization):
            return NotImplemented
        return self.scale == other.scale and bool(np.array_equal(self.center, other.center))

    __hash__ = None  # type: ignore[assignment]


def normalize(pc: PointCloud, *, margin: float = 0.1) -> tuple[PointCloud, Normalization]:
    """Center the bounding box at 0 and scale its largest half-extent to ``1 - margin``.

    The margin leaves room inside [-1, 1]^3 for the surface to close beyond the outermost
    samples. Normals and colors are carried over unchanged. Raises ``ValueError`` for an empty
    cloud or one of zero extent (``load_point_cloud`` already rejects those).
    """
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    if len(pc) == 0:
        raise ValueError("cannot normalize an empty point cloud")
    lo, hi = pc.points.min(axis=0), pc.points.max(axis=0)
    half = float((hi - lo).max()) / 2
    if not half > 0:
        raise ValueError("cannot normalize a point cloud of zero extent")
    norm = Normalization(center=(lo + hi) / 2, scale=half / (1.0 - margin))
    return PointCloud(norm.to_unit(pc.points), pc.normals, pc.colors), norm


def subsample(pc: PointCloud, n: int, seed: int | None = 0) -> PointCloud:
    """``n`` points drawn without replacement (file order kept); all of them if fewer exist."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(pc) <= n:
        return pc
    idx = np.sort(np.random.default_rng(seed).choice(len(pc), size=n, replace=False))
    return PointCloud(
        pc.points[idx],
        None if pc.normals is None else pc.normals[idx],
        None if pc.colors is None else pc.colors[idx],
    )
