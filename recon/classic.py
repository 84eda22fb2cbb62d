"""Classic baseline: screened Poisson surface reconstruction through Open3D.

Used as the non-neural reference the fitted fields are compared against, and as a fast
fallback. Pipeline: (optional) normal estimation from k nearest neighbours, consistent
orientation by propagating along a k-NN graph (``orient_normals_consistent_tangent_plane``),
screened Poisson, then a global orientation fix from the mesh's signed volume, and optional
trimming of low-density vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meshing.mesh import Mesh
from recon.progress import CancelToken, ProgressEvent, ProgressFn, Stage, no_progress

ORIENTATIONS = ("winding", "tangent_plane")
"""How ``poisson_reconstruct`` orients the normals it estimates."""


@dataclass(frozen=True)
class PoissonConfig:
    """Settings for ``poisson_reconstruct``.

    depth: octree depth; the grid has up to 2^depth cells per side of the (scaled) bounding
        box. 9 resolves ~1/500 of the object size; each +1 costs ~3-4x time and memory.
    scale: ratio of the reconstruction cube to the points' bounding cube. 1.1 leaves room for
        the surface to close around the samples.
    linear_fit: place iso-vertices by linear interpolation of the implicit function instead of
        Open3D's default; slightly more accurate on clean data, can ring on noisy data.
    density_quantile: drop vertices whose Poisson sample density is below this quantile
        (0 = keep all). Off by default: for the closed objects this service targets, the
        untrimmed surface is watertight and trimming would punch holes in sparsely sampled
        regions and skew the metrics. For open scans (terrain, a single facade) 0.01-0.05
        removes the "balloon" Poisson inflates where there is no data.
    normal_knn: neighbours for PCA normal estimation when no normals are given.
    orient_knn: neighbours of the graph along which normal orientation is propagated
        (``tangent_plane`` only).
    orientation: how estimated normals get their signs: ``winding`` (default; a spanning tree cut
        into patches whose signs the generalized winding number decides, see
        :mod:`recon.orientation`) or ``tangent_plane`` (Open3D's propagation, which flips whole
        regions behind thin parts and is slow on CAD shapes).
    n_threads: threads for the Poisson solve (-1 = all cores). One by default: a job holds one
        CPU (``SURFRECON_JOB_NUM_CPUS``), the solve's multithreaded paths have known races
        (Open3D issue 6828, PoissonRecon issue 298), and on 2 cores the second thread saved no
        time (README, "Layout and tests"). Normal estimation uses Open3D's global OpenMP setting.
    """

    depth: int = 9
    scale: float = 1.1
    linear_fit: bool = False
    density_quantile: float = 0.0
    normal_knn: int = 30
    orient_knn: int = 30
    orientation: str = "winding"
    n_threads: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 14:
            raise ValueError(f"depth must be in [1, 14], got {self.depth}")
        if not self.scale >= 1.0:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if not 0.0 <= self.density_quantile < 1.0:
            raise ValueError(f"density_quantile must be in [0, 1), got {self.density_quantile}")
        if self.normal_knn < 3 or self.orient_knn < 3:
            raise ValueError("normal_knn and orient_knn must be >= 3")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"expected orientation in {ORIENTATIONS}, got {self.orientation!r}")
        if self.n_threads == 0 or self.n_threads < -1:
            raise ValueError(f"n_threads must be -1 or positive, got {self.n_threads}")


def poisson_reconstruct(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    config: PoissonConfig = PoissonConfig(),
    *,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Mesh:
    """Screened Poisson mesh of ``points`` (n, 3), with outward normals and CCW faces.

    ``normals`` (n, 3) are used as given (rescaled to unit length) but may point inward: the
    global orientation is fixed afterwards either way. Without them they are estimated and
    oriented consistently; that propagation cannot link far-apart components, so a cloud of
    several separate objects may come out with some objects inside-out — pass normals then.

    Progress stages: 'normals' (2 steps: estimate, orient) and 'poisson' (2 steps: solve,
    clean up). ``cancel`` is checked between steps; Open3D calls themselves cannot be
    interrupted. Raises ``ValueError`` for bad arrays.
    """
    import open3d as o3d  # heavy import, only needed here

    report = progress or no_progress
    points = _check_points(points)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if normals is None:
        report(ProgressEvent(Stage.NORMALS, 0, 2))
        pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=config.normal_knn))
        _check_cancel(cancel)
        report(ProgressEvent(Stage.NORMALS, 1, 2))
        if config.orientation == "winding":
            from recon.orientation import orient_normals

            oriented = orient_normals(points, np.asarray(pcd.normals)).normals
            pcd.normals = o3d.utility.Vector3dVector(oriented)
        else:
            _orient_normals(pcd, points, config.orient_knn)
    else:
        pcd.normals = o3d.utility.Vector3dVector(_check_normals(normals, len(points)))
    report(ProgressEvent(Stage.NORMALS, 2, 2))
    _check_cancel(cancel)

    report(ProgressEvent(Stage.POISSON, 0, 2))
    o3d_mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        pcd,
        depth=config.depth,
        scale=config.scale,
        linear_fit=config.linear_fit,
        n_threads=config.n_threads,
    )
    _check_cancel(cancel)
    report(ProgressEvent(Stage.POISSON, 1, 2))
    vertices = np.asarray(o3d_mesh.vertices, dtype=np.float64)
    faces = np.asarray(o3d_mesh.triangles, dtype=np.int64)
    densities = np.asarray(densities, dtype=np.float64)
    # The untrimmed Poisson surface is closed, so its signed volume tells inside from outside
    # regardless of how the normals were oriented; decide before trimming opens it.
    if signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    if config.density_quantile > 0 and len(vertices):
        keep = densities >= np.quantile(densities, config.density_quantile)
        faces = faces[keep[faces].all(axis=1)]
    vertices, faces = _drop_unreferenced(vertices, faces)
    mesh = Mesh(vertices, faces, vertex_normals=vertex_normals(vertices, faces))
    report(ProgressEvent(Stage.POISSON, 2, 2))
    return mesh


def _orient_normals(pcd, points: np.ndarray, k: int) -> None:
    """Consistent normal orientation, with fallbacks for qhull failures.

    Open3D builds its propagation graph from a qhull Delaunay tetrahedralisation, which can
    fail on degenerate input (e.g. exactly co-spherical samples). A jitter far below the
    sampling density breaks the degeneracy without changing the graph's meaning; if even that
    fails, normals are pointed away from the centroid, right for star-shaped objects.
    """
    import open3d as o3d

    try:
        pcd.orient_normals_consistent_tangent_plane(k)
        return
    except RuntimeError:
        pass
    diag = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))
    rng = np.random.default_rng(0)
    jittered = o3d.geometry.PointCloud(
        o3d.utility.Vector3dVector(points + rng.normal(scale=1e-7 * diag, size=points.shape))
    )
    jittered.normals = pcd.normals
    try:
        jittered.orient_normals_consistent_tangent_plane(k)
        pcd.normals = jittered.normals
        return
    except RuntimeError:
        pass
    normals = np.asarray(pcd.normals).copy()
    away = np.einsum("ij,ij->i", normals, points - points.mean(axis=0)) < 0
    normals[away] *= -1
    pcd.normals = o3d.utility.Vector3dVector(normals)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh; positive when faces are CCW from outside."""
    if len(faces) == 0:
        return 0.0
    # Summing tetrahedra against the centroid instead of the origin avoids cancellation
    # for meshes far from the origin (georeferenced scans).
    v = vertices - vertices.mean(axis=0)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals following the face winding (zero for lone vertices)."""
    v = vertices
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    out = np.zeros_like(v)
    for k in range(3):
        for axis in range(3):
            out[:, axis] += np.bincount(faces[:, k], weights=fn[:, axis], minlength=len(v))
    length = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, length, out=np.zeros_like(out), where=length > 0)


def _drop_unreferenced(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.reshape(-1)] = True
    if used.all():
        return vertices, faces
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces]


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3), got {points.shape}")
    if len(points) < 4:
        raise ValueError(f"Poisson reconstruction needs at least 4 points, got {len(points)}")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or infinite values")
    return points


def _check_normals(normals: np.ndarray, n: int) -> np.ndarray:
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != (n, 3):
        raise ValueError(f"normals must have shape ({n}, 3), got {normals.shape}")
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    if not (np.isfinite(length).all() and (length > 0).all()):
        raise ValueError("normals must be finite and non-zero")
    return normals / length


def _check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()
