"""Mesh files: writing PLY / OBJ / GLB / STL, reading anything trimesh reads.

Positions are written at float32 precision in every format (PLY, STL and glTF store float32;
OBJ is written with 9 significant digits, which round-trips float32). Winding is preserved, so
faces stay counter-clockwise seen from outside.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from meshing.mesh import Mesh, face_normals, merge_duplicate_vertices

LOADABLE = ("ply", "obj", "stl", "glb", "gltf", "off")

PathLike = str | os.PathLike


def ply_bytes(mesh: Mesh) -> bytes:
    """Binary little-endian PLY: float x y z, [float nx ny nz], [uchar red green blue], faces."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.vertex_normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if mesh.vertex_colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(mesh.n_vertices, dtype=fields)
    for i, name in enumerate("xyz"):
        vert[name] = mesh.vertices[:, i]
    if mesh.vertex_normals is not None:
        for i, name in enumerate(("nx", "ny", "nz")):
            vert[name] = mesh.vertex_normals[:, i]
    if mesh.vertex_colors is not None:
        for i, name in enumerate(("red", "green", "blue")):
            vert[name] = mesh.vertex_colors[:, i]
    face = np.empty(mesh.n_faces, dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face["n"] = 3
    face["idx"] = mesh.faces
    type_name = {"<f4": "float", "u1": "uchar"}
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment surfrecon",
        f"element vertex {mesh.n_vertices}",
    ]
    header += [f"property {type_name[t]} {name}" for name, t in fields]
    header += [
        f"element face {mesh.n_faces}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    return ("\n".join(header) + "\n").encode("ascii") + vert.tobytes() + face.tobytes()


def obj_bytes(mesh: Mesh) -> bytes:
    """Wavefront OBJ: ``v x y z [r g b]`` (colours as 0..1 floats), ``vn``, 1-based ``f``."""
    parts = []
    if mesh.vertex_colors is not None:
        rows = np.hstack([mesh.vertices, mesh.vertex_colors / 255.0])
        parts.append(("v %.9g %.9g %.9g %.4g %.4g %.4g\n" * len(rows)) % tuple(rows.ravel()))
    else:
        parts.append(("v %.9g %.9g %.9g\n" * mesh.n_vertices) % tuple(mesh.vertices.ravel()))
    f = mesh.faces + 1
    if mesh.vertex_normals is not None:
        parts.append(("vn %.6g %.6g %.6g\n" * mesh.n_vertices) % tuple(mesh.vertex_normals.ravel()))
        parts.append(("f %d//%d %d//%d %d//%d\n" * len(f)) % tuple(np.repeat(f, 2, axis=1).ravel()))
    else:
        parts.append(("f %d %d %d\n" * len(f)) % tuple(f.ravel()))
    return "".join(parts).encode("ascii")


def stl_bytes(mesh: Mesh) -> bytes:
    """Binary STL (a triangle soup: shared vertices and attributes are not stored)."""
    rec = np.zeros(
        mesh.n_faces, dtype=[("normal", "<f4", (3,)), ("tri", "<f4", (3, 3)), ("attr", "<u2")]
    )
    rec["normal"] = face_normals(mesh)
    rec["tri"] = mesh.vertices[mesh.faces]
    header = b"surfrecon binary STL".ljust(80, b" ")
    return header + np.uint32(mesh.n_faces).tobytes() + rec.tobytes()


def glb_bytes(mesh: Mesh) -> bytes:
    """Binary glTF 2.0 via trimesh (with NORMAL / COLOR_0 when present)."""
    import trimesh

    tm = trimesh.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        vertex_normals=mesh.vertex_normals,
        vertex_colors=mesh.vertex_colors,
        process=False,
    )
    return tm.export(file_type="glb")


EXPORTERS: dict[str, Callable[[Mesh], bytes]] = {
    "ply": ply_bytes,
    "obj": obj_bytes,
    "stl": stl_bytes,
    "glb": glb_bytes,
}
"""Format name -> function(mesh) -> file contents."""


def _format_of(path: Path, format: str | None, allowed) -> str:
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in allowed:
        raise ValueError(
            f"expected a mesh format in {sorted(allowed)}, got {fmt!r} for {str(path)!r}"
        )
    return fmt


def mesh_bytes(mesh: Mesh, format: str) -> bytes:
    """File contents of ``mesh`` in ``format`` ('ply', 'obj', 'glb' or 'stl')."""
    fmt = str(format).lower()
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown mesh format {fmt!r}; expected one of {sorted(EXPORTERS)}")
    return EXPORTERS[fmt](mesh)


def save_mesh(mesh: Mesh, path: PathLike, format: str | None = None) -> Path:
    """Write ``mesh`` to ``path`` (format from ``format`` or the suffix); returns the path.

    The file is written under a temporary name and renamed, so readers never see a partial file.
    """
    path = Path(path)
    data = mesh_bytes(mesh, _format_of(path, format, EXPORTERS))
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def load_mesh(path: PathLike, format: str | None = None, merge_vertices: bool = True) -> Mesh:
    """Read a triangle mesh (ply / obj / stl / glb / gltf / off) into a Mesh.

    Scenes are flattened with their transforms; vertex normals and colours are kept when the
    file has them (normals only for single-mesh files). With ``merge_vertices`` exactly
    coincident vertices are merged (first occurrence kept, order otherwise preserved), so STL
    soups and seam-split OBJs become connected. Raises FileNotFoundError for a missing file and
    ValueError for unreadable files or files without triangles.
    """
    import trimesh

    path = Path(path)
    fmt = _format_of(path, format, LOADABLE)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {str(path)!r}")
    try:
        loaded = trimesh.load(str(path), file_type=fmt, process=False)
    except Exception as e:  # trimesh raises many types for corrupt input
        raise ValueError(f"could not read {fmt} mesh {str(path)!r}: {e}") from e
    tm = loaded
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.geometry.values() if isinstance(g, trimesh.Trimesh)]
        if len(loaded.geometry) == 1 and len(meshes) == 1 and _identity_scene(loaded):
            tm = meshes[0]  # keep per-vertex normals, which flattening drops
        elif meshes:
            tm = loaded.to_mesh()
    if not isinstance(tm, trimesh.Trimesh) or len(tm.faces) == 0:
        raise ValueError(f"expected a mesh with triangles in {str(path)!r}, got none")
    # trimesh keeps file normals only in its (private) cache, and reading the property would
    # compute normals for a file that has none. No public API tells them apart, so trimesh is
    # pinned below 6 and test_file_normals_are_kept_not_recomputed fails if the cache moves.
    normals = tm._cache.cache.get("vertex_normals") if hasattr(tm, "_cache") else None
    colors = None
    if tm.visual is not None and tm.visual.kind == "vertex":
        colors = np.asarray(tm.visual.vertex_colors)[:, :3]
    mesh = Mesh(
        np.asarray(tm.vertices),
        np.asarray(tm.faces),
        vertex_normals=None if normals is None else np.asarray(normals, dtype=np.float64),
        vertex_colors=None if colors is None else np.asarray(colors, dtype=np.uint8),
    )
    if not np.all(np.isfinite(mesh.vertices)):
        raise ValueError(f"expected finite vertex positions in {str(path)!r}, got NaN or inf")
    return merge_duplicate_vertices(mesh) if merge_vertices else mesh


def _identity_scene(scene) -> bool:
    node = scene.graph.nodes_geometry[0] if scene.graph.nodes_geometry else None
    if node is None:
        return False
    matrix, _ = scene.graph[node]
    return bool(np.allclose(matrix, np.eye(4)))
