"""A CPU ground-truth renderer for posed-image tests and the synthetic multi-view benchmark.

Rays are cast against the mesh with Open3D's ``RaycastingScene`` (an Embree BVH), one ray per
pixel through its centre (+0.5 convention, OpenCV camera axes, like ``MultiviewDataset``).
Shading is view-independent, so that a fitter with a view-independent colour can match it
exactly: ``albedo * (ambient + (1 - ambient) * max(0, n . l))`` with a light direction fixed
in the world and the normal turned towards the camera (open meshes are lit on both sides).
The albedo is the mesh's vertex colours when it has them, else a smooth procedural colour
field of the position (sums of sines along three fixed directions) so that the images carry
texture to match. Nothing is anti-aliased: the mask is exactly "a ray hit".
"""

from __future__ import annotations

import numpy as np

from recon.io.dataset import MultiviewDataset
from recon.io.normalize import Normalization

LIGHT_DIR = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
"""Unit direction towards the light, in the frame the mesh is given in."""
AMBIENT = 0.3
"""Fraction of the albedo visible without direct light."""
_PATTERN_DIRS = np.array([[0.8, 0.5, 0.3], [-0.3, 0.9, 0.4], [0.4, -0.3, 0.9]])
_PATTERN_PHASE = np.array([0.0, 2.1, 4.2])


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) OpenCV camera-to-world pose at ``eye`` looking at ``target``; image "up" near ``up``."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:  # looking along ``up``: any perpendicular will do
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = eye
    return c2w


def intrinsics_from_fov(height: int, width: int, fov_deg: float) -> np.ndarray:
    """(3, 3) pinhole K with horizontal field of view ``fov_deg``, square pixels, centred."""
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def procedural_albedo(points: np.ndarray, frequency: float = 6.0) -> np.ndarray:
    """(M, 3) RGB in [0.15, 0.95] varying smoothly with position (M, 3): texture for the fitter."""
    s = np.sin(frequency * np.asarray(points, dtype=np.float64) @ _PATTERN_DIRS.T + _PATTERN_PHASE)
    return 0.55 + 0.4 * s


def pixel_rays(intrinsics: np.ndarray, c2w: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray origin (3,) and directions (H, W, 3) scaled so that ``t`` along them is the camera z-depth."""
    j, i = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([j, i, np.ones_like(j)], axis=-1)
    d_cam = pix @ np.linalg.inv(intrinsics).T
    d_cam /= d_cam[..., 2:3]
    return c2w[:3, 3].copy(), d_cam @ c2w[:3, :3].T


class _Scene:
    """A mesh loaded into a ``RaycastingScene`` once, rendered from many cameras."""

    def __init__(self, mesh) -> None:
        import open3d as o3d

        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        colors = getattr(mesh, "vertex_colors", None)
        self.colors = None if colors is None else np.asarray(colors, dtype=np.float64)[:, :3] / 255.0
        if len(self.faces) == 0:
            raise ValueError("cannot render a mesh without faces")
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(self.vertices.astype(np.float32)),
                                 o3d.core.Tensor(self.faces.astype(np.uint32)))

    def render(self, intrinsics, c2w, height, width, background) -> dict[str, np.ndarray]:
        import open3d as o3d

        origin, dirs = pixel_rays(np.asarray(intrinsics, float), np.asarray(c2w, float), height, width)
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=-1).reshape(-1, 6)
        out = self.scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        t = out["t_hit"].numpy()
        hit = np.isfinite(t)
        prim = out["primitive_ids"].numpy()[hit].astype(np.int64)
        uv = out["primitive_uvs"].numpy()[hit].astype(np.float64)
        tri = self.vertices[self.faces[prim]]
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        points = np.einsum("mk,mkj->mj", bary, tri)
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        d = dirs.reshape(-1, 3)[hit]
        n *= -np.sign(np.einsum("mj,mj->m", n, d))[:, None]  # face the camera
        if self.colors is not None:
            albedo = np.einsum("mk,mkj->mj", bary, self.colors[self.faces[prim]])
        else:
            albedo = procedural_albedo(points)
        shade = AMBIENT + (1.0 - AMBIENT) * np.clip(n @ LIGHT_DIR, 0.0, None)
        rgb = np.full((height * width, 3), background, dtype=np.float64)
        rgb[hit] = albedo * shade[:, None]
        depth = np.where(hit, t, 0.0)
        return {"rgb": rgb.reshape(height, width, 3).astype(np.float32),
                "mask": hit.reshape(height, width).astype(np.float32),
                "depth": depth.reshape(height, width).astype(np.float32)}


def render_mesh(mesh, intrinsics: np.ndarray, c2w: np.ndarray, height: int, width: int, *,
                background: float = 1.0) -> dict[str, np.ndarray]:
    """Render ``mesh`` (anything with ``vertices`` (V, 3) and ``faces`` (F, 3)) from one camera.

    ``intrinsics`` (3, 3) in pixels (+0.5 centres), ``c2w`` (4, 4) OpenCV axes, in the mesh's
    frame. Returns ``rgb`` (H, W, 3) float32 in [0, 1] (``background`` where nothing is hit),
    ``mask`` (H, W) float32 in {0, 1} and ``depth`` (H, W) float32: the camera z of the first
    hit (0 where nothing is hit).
    """
    return _Scene(mesh).render(intrinsics, c2w, height, width, background)


def orbit_cameras(n: int, radius: float, height: int, width: int, fov_deg: float = 40.0,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cameras spread evenly over a sphere of ``radius`` about the origin, looking at it.

    Positions follow a Fibonacci spiral turned by a random rotation drawn from ``seed``.
    Returns intrinsics (n, 3, 3) (horizontal field of view ``fov_deg``) and c2w (n, 4, 4),
    OpenCV axes, image "up" towards +z where possible.
    """
    if n < 1 or radius <= 0:
        raise ValueError(f"expected n >= 1 and radius > 0, got n={n}, radius={radius}")
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * k
    r = np.sqrt(1.0 - z * z)
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    c2w = np.stack([look_at(radius * (q @ d)) for d in dirs])
    K = intrinsics_from_fov(height, width, fov_deg)
    return np.tile(K, (n, 1, 1)), c2w


def normalize_mesh(mesh, radius: float = 0.8):
    """(vertices in the unit frame, ``Normalization``) placing the mesh within ``radius`` of 0.

    Centre: the bounding-box centre; scale: the farthest vertex lands at ``radius``.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    center = 0.5 * (v.min(0) + v.max(0))
    extent = float(np.linalg.norm(v - center, axis=1).max())
    if not extent > 0:
        raise ValueError("cannot normalise a mesh of zero extent")
    norm = Normalization(center=center, scale=extent / radius)
    return norm.to_unit(v), norm


def render_dataset(mesh, n_views: int, height: int, width: int, *, radius: float = 0.8,
                   fov_deg: float = 40.0, distance: float | None = None, seed: int = 0,
                   background: float = 1.0) -> MultiviewDataset:
    """Render ``mesh`` from ``n_views`` orbit cameras into a ``MultiviewDataset`` with masks.

    The mesh is first normalised into the sphere of ``radius`` (the dataset's
    ``normalization`` maps back to the mesh's own frame). The cameras sit at ``distance``
    (default: where the unit sphere fills 90% of the smaller field of view) and the procedural
    texture is evaluated in the normalised frame.
    """
    from types import SimpleNamespace

    unit_vertices, norm = normalize_mesh(mesh, radius)
    K = intrinsics_from_fov(height, width, fov_deg)
    if distance is None:
        half = np.arctan(0.5 * min(height, width) / K[0, 0])
        distance = 1.0 / np.sin(0.9 * half)
    Ks, c2w = orbit_cameras(n_views, distance, height, width, fov_deg, seed)
    scene = _Scene(SimpleNamespace(vertices=unit_vertices, faces=mesh.faces,
                                   vertex_colors=getattr(mesh, "vertex_colors", None)))
    views = [scene.render(Ks[i], c2w[i], height, width, background) for i in range(n_views)]
    return MultiviewDataset(
        images=np.stack([v["rgb"] for v in views]), intrinsics=Ks, c2w=c2w, normalization=norm,
        masks=np.stack([v["mask"] for v in views]), names=[f"view_{i:03d}" for i in range(n_views)],
        normalization_source="given",
        notes=[f"synthetic render: {n_views} views at distance {distance:.3g}, mesh within radius {radius:g}"])


# ------------------------------------------------------------------------------------------------
# Scenes without masks: the object on a textured ground inside a textured backdrop
# ------------------------------------------------------------------------------------------------

GROUND_CHECK = 0.25
"""Edge of the ground's checker squares, in units of the normalised frame."""


def checker_albedo(points: np.ndarray, square: float = GROUND_CHECK) -> np.ndarray:
    """(M, 3) RGB of a two-tone checker on the xy plane with a slow colour drift: texture for the ground."""
    p = np.asarray(points, dtype=np.float64)
    odd = (np.floor(p[:, 0] / square) + np.floor(p[:, 1] / square)) % 2
    drift = 0.1 * np.sin(0.9 * p[:, :2] @ np.array([[1.0, 0.3, -0.5], [0.2, -1.0, 0.7]]) + 1.0)
    return np.clip(np.where(odd[:, None] > 0, [0.75, 0.7, 0.6], [0.3, 0.35, 0.4]) + drift, 0.05, 0.95)


def _ground_and_backdrop(z_ground: float, extent: float, backdrop_radius: float):
    """(vertices, faces, part) of a square ground of half-size ``extent`` at ``z_ground`` and a
    UV sphere of ``backdrop_radius`` around the origin (part 1 and 2)."""
    g = np.array([[-extent, -extent, z_ground], [extent, -extent, z_ground], [extent, extent, z_ground],
                  [-extent, extent, z_ground]])
    gf = np.array([[0, 1, 2], [0, 2, 3]])
    n_lat, n_lon = 24, 48
    lat = np.linspace(0, np.pi, n_lat + 1)
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    sv = backdrop_radius * np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), np.cos(la)], -1).reshape(-1, 3)
    idx = np.arange((n_lat + 1) * n_lon).reshape(n_lat + 1, n_lon)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, d = idx[1:], np.roll(idx[1:], -1, axis=1)
    sf = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    vertices = np.concatenate([g, sv])
    faces = np.concatenate([gf, sf + 4])
    part = np.concatenate([np.full(len(gf), 1), np.full(len(sf), 2)])
    return vertices, faces, part


def hemisphere_cameras(n: int, distance: float, height: int, width: int, fov_deg: float = 40.0,
                       elevation_deg: tuple[float, float] = (12.0, 60.0), target=(0.0, 0.0, 0.0),
                       seed: int = 0, azimuth_deg: float = 360.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` cameras at ``distance`` from ``target`` on a band of elevations above it, looking at it
    (golden-angle azimuths, elevations evenly spread); intrinsics (n, 3, 3) and c2w (n, 4, 4).
    With ``azimuth_deg`` below 360 the azimuths fill only that arc, evenly (views from one side)."""
    k = np.arange(n) + 0.5
    el = np.radians(elevation_deg[0] + (elevation_deg[1] - elevation_deg[0]) * ((k * 0.618034) % 1.0))
    if azimuth_deg < 360.0:
        az = np.radians(azimuth_deg) * (((k * 0.754878) % 1.0) - 0.5)
    else:
        az = np.pi * (3.0 - np.sqrt(5.0)) * k
    az = az + np.random.default_rng(seed).uniform(0, 2 * np.pi)
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
    t = np.asarray(target, dtype=np.float64)
    c2w = np.stack([look_at(t + distance * d, t) for d in dirs])
    return np.tile(intrinsics_from_fov(height, width, fov_deg), (n, 1, 1)), c2w


def render_scene_dataset(mesh, n_views: int, height: int, width: int, *, radius: float = 0.5,
                         fov_deg: float = 40.0, distance: float = 2.2, backdrop_radius: float = 4.0,
                         elevation_deg: tuple[float, float] = (12.0, 60.0), seed: int = 0,
                         with_object_masks: bool = False, azimuth_deg: float = 360.0):
    """``mesh`` standing on a checkered ground inside a textured backdrop sphere, without masks.

    The mesh is normalised into the sphere of ``radius`` about the origin (the dataset's
    ``normalization`` maps back to the mesh's own frame); the ground is the plane of its lowest
    vertex; the backdrop a sphere of ``backdrop_radius``. ``n_views`` cameras at ``distance``
    look at the origin from ``elevation_deg`` (default 12-60) degrees above the horizon, all around
    it or, with ``azimuth_deg`` below 360, from an arc of that many degrees. Every surface is shaded like
    :func:`render_mesh` (object: procedural texture or vertex colours; ground: a checker;
    backdrop: a slower procedural texture). ``masks`` is None: the unmasked setting; with
    ``with_object_masks`` the object's masks (N, H, W) are returned beside the dataset, for judging.
    """
    import open3d as o3d

    unit_vertices, norm = normalize_mesh(mesh, radius)
    obj_faces = np.asarray(mesh.faces, dtype=np.int64)
    z_ground = float(unit_vertices[:, 2].min())
    sv, sf, spart = _ground_and_backdrop(z_ground, backdrop_radius * 0.99, backdrop_radius)
    vertices = np.concatenate([unit_vertices, sv])
    faces = np.concatenate([obj_faces, sf + len(unit_vertices)])
    part = np.concatenate([np.zeros(len(obj_faces), np.int64), spart])
    colors = getattr(mesh, "vertex_colors", None)
    colors = None if colors is None else np.asarray(colors, dtype=np.float64)[:, :3] / 255.0
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    Ks, c2w = hemisphere_cameras(n_views, distance, height, width, fov_deg, elevation_deg, seed=seed,
                                 azimuth_deg=azimuth_deg)
    images, object_masks = [], []
    for K, pose in zip(Ks, c2w):
        origin, dirs = pixel_rays(K, pose, height, width)
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=-1).reshape(-1, 6)
        out = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        prim = out["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(out["t_hit"].numpy())
        rgb = np.zeros((height * width, 3))
        prim, uv = prim[hit], out["primitive_uvs"].numpy()[hit].astype(np.float64)
        tri = vertices[faces[prim]]
        bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
        points = np.einsum("mk,mkj->mj", bary, tri)
        nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-30)
        nrm *= -np.sign(np.einsum("mj,mj->m", nrm, dirs.reshape(-1, 3)[hit]))[:, None]
        which = part[prim]
        albedo = np.empty_like(points)
        o = which == 0
        if colors is not None:
            albedo[o] = np.einsum("mk,mkj->mj", bary[o], colors[obj_faces[prim[o]]])
        else:
            albedo[o] = procedural_albedo(points[o])
        albedo[which == 1] = checker_albedo(points[which == 1])
        albedo[which == 2] = procedural_albedo(points[which == 2], frequency=1.2)
        shade = AMBIENT + (1.0 - AMBIENT) * np.clip(nrm @ LIGHT_DIR, 0.0, None)
        rgb[hit] = albedo * shade[:, None]
        images.append(rgb.reshape(height, width, 3).astype(np.float32))
        obj = np.zeros(height * width, np.float32)
        obj[np.flatnonzero(hit)[which == 0]] = 1.0
        object_masks.append(obj.reshape(height, width))
    ds = MultiviewDataset(
        images=np.stack(images), intrinsics=Ks, c2w=c2w, normalization=norm, masks=None,
        names=[f"view_{i:03d}" for i in range(n_views)], normalization_source="given",
        notes=[(f"synthetic scene: {n_views} views at distance {distance:.3g}, object within radius {radius:g} "
                f"on a ground at z = {z_ground:.3g}, backdrop radius {backdrop_radius:g}, no masks")])
    return (ds, np.stack(object_masks)) if with_object_masks else ds
