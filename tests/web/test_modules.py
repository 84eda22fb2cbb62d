"""The page's own modules in the browser: the point-cloud readers of the preview against files
written here with known coordinates, and the time-left estimate against its definition."""

from __future__ import annotations

import base64
import re
import struct

import numpy as np
import pytest
from web_helpers import needs_chromium, open_page

pytestmark = needs_chromium

PARSE = """async ([name, b64, full]) => {
  const { parsePoints } = await import('/web/parse.js');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    const r = parsePoints(name, bytes.buffer);
    return { total: r.total, count: r.count,
             xyz: full ? Array.from(r.positions) : Array.from(r.positions.slice(0, 9)) };
  } catch (e) {
    return { error: e.message };
  }
}"""


def _points(n=300, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-5, 5, size=(n, 3)).astype(np.float32)


def _ply(points: np.ndarray, fmt: str) -> bytes:
    """A PLY with normals, colours and two faces, so the reader must skip what it does not need."""
    n = len(points)
    head = (f"ply\nformat {fmt} 1.0\ncomment made by a test\nelement vertex {n}\n"
            "property float x\nproperty float y\nproperty float z\nproperty float nx\nproperty float ny\n"
            "property float nz\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
            "element face 2\nproperty list uchar int vertex_indices\nend_header\n").encode()
    if fmt == "ascii":
        rows = "".join(f"{x!r} {y!r} {z!r} 0 0 1 255 0 0\n" for x, y, z in points.tolist())
        return head + (rows + "3 0 1 2\n3 2 1 0\n").encode()
    e = "<" if fmt == "binary_little_endian" else ">"
    body = b"".join(struct.pack(f"{e}6f3B", *p, 0.0, 0.0, 1.0, 255, 0, 0) for p in points)
    faces = struct.pack(f"{e}B3i", 3, 0, 1, 2) * 2
    return head + body + faces


def _ply_face_first_with_list(points: np.ndarray) -> bytes:
    """Faces before vertices and a list property inside the vertex: records of varying size."""
    head = (f"ply\nformat binary_little_endian 1.0\nelement face 1\nproperty list uchar int vertex_indices\n"
            f"element vertex {len(points)}\nproperty list uchar float tags\nproperty double x\n"
            "property double y\nproperty double z\nend_header\n").encode()
    face = struct.pack("<B3i", 3, 0, 1, 2)
    body = b"".join(struct.pack(f"<B{i % 3}f3d", i % 3, *([7.0] * (i % 3)), *p) for i, p in enumerate(points))
    return head + face + body


def _stl_binary(points: np.ndarray) -> bytes:
    tris = points[: len(points) // 3 * 3].reshape(-1, 3, 3)
    out = bytearray(b"\0" * 80 + struct.pack("<I", len(tris)))
    for t in tris:
        out += struct.pack("<12fH", 0, 0, 1, *t.ravel(), 0)
    return bytes(out)


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


P = _points()
CASES = {
    "ascii.ply": (_ply(P, "ascii"), P),
    "le.ply": (_ply(P, "binary_little_endian"), P),
    "be.ply": (_ply(P, "binary_big_endian"), P),
    "cloud.xyz": ("# x y z\n" + "".join(f"{x!r},{y!r},{z!r},0.5\n" for x, y, z in P.tolist()), P),
    "scan.pts": (f"{len(P)}\n" + "".join(f"{x!r} {y!r} {z!r} 10 1 2 3\n" for x, y, z in P.tolist()), P),
    "mesh.obj": ("".join(f"v {x!r} {y!r} {z!r}\nvn 0 0 1\n" for x, y, z in P.tolist()) + "f 1 2 3\n", P),
    "mesh.off": (f"OFF\n# comment\n{len(P)} 1 0\n" + "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in P.tolist())
                 + "3 0 1 2\n", P),
    "walk.ply": (_ply_face_first_with_list(P), P),
    "mesh.stl": (_stl_binary(P), P),
    "ascii.stl": ("solid t\n" + "".join(f"facet normal 0 0 1\nouter loop\nvertex {x!r} {y!r} {z!r}\n"
                                        for x, y, z in P.tolist()) + "endsolid t\n", P),
    "f64.npy": (_npy(P.astype(np.float64)), P),
    "f32x4.npy": (_npy(np.hstack([P, np.ones((len(P), 1), np.float32)])), P),
}


def _parse(page, name: str, data, full: bool = True) -> dict:
    raw = data.encode() if isinstance(data, str) else data
    return page.evaluate(PARSE, [name, base64.b64encode(raw).decode(), full])


@pytest.fixture
def blank(page):
    open_page(page, "/")
    return page


def test_readers_recover_the_written_points(blank):
    for name, (data, expected) in CASES.items():
        got = _parse(blank, name, data)
        assert "error" not in got, (name, got)
        assert got["total"] == got["count"] == len(expected), name
        np.testing.assert_allclose(np.reshape(got["xyz"], (-1, 3)), expected, rtol=1e-6, atol=1e-6,
                                   err_msg=name)


@pytest.mark.parametrize("name", ["big.npy", "big.ply", "walk.ply", "big.xyz", "big.stl"])
def test_large_clouds_are_subsampled_evenly(blank, name):
    n = 240_000
    pts = _points(n, seed=1)
    data = {"big.npy": lambda: _npy(pts), "big.ply": lambda: _ply(pts, "binary_big_endian"),
            "walk.ply": lambda: _ply_face_first_with_list(pts), "big.stl": lambda: _stl_binary(pts),
            "big.xyz": lambda: "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in pts.tolist())}[name]()
    got = _parse(blank, name, data, full=False)
    assert (got["total"], got["count"]) == (n, 200_000), got
    # Output i is input floor(i * n / 200000): points 0, 1, 2 for i = 0, 1, 2 (n / 200000 = 1.2).
    np.testing.assert_allclose(np.reshape(got["xyz"], (3, 3)), pts[[0, 1, 2]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, data, message", [
    ("bad.xyz", "1 2 3\n4 five 6\n", "line 2: “five” is not a number"),
    ("short.xyz", "1 2 3\n4 5\n", "line 2: expected at least 3 numbers"),
    ("cut.ply", _ply(P, "binary_little_endian")[:400], "ends before its last vertex"),
    ("nohead.ply", b"solid\n", "not a PLY file"),
    ("empty.obj", "# nothing\n", "no points"),
    ("cloud.las", b"LASF", "no preview for .las files"),
])
def test_readers_explain_bad_files(blank, name, data, message):
    got = _parse(blank, name, data)
    assert message in got.get("error", ""), got


def test_dropping_a_file_previews_it(blank):
    text = "".join(f"{x!r} {y!r} {z!r}\n" for x, y, z in P.tolist())
    blank.evaluate("""(text) => {
      const dt = new DataTransfer();
      dt.items.add(new File([text], 'dropped.xyz'));
      document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true }));
    }""", text)
    blank.wait_for_function("document.getElementById('view-info').textContent.includes('Preview')")
    assert re.fullmatch(rf"dropped.xyz — \d+ KB, {len(P)} points\.", blank.text_content("#file-info"))
    assert blank.evaluate("document.getElementById('file').files[0].name") == "dropped.xyz"  # submitted as picked


def test_time_left_from_the_progress_rate(blank):
    got = blank.evaluate("""async () => {
      const { estimateRemaining, duration, stageWords } = await import('/web/progress.js');
      return {
        steady: estimateRemaining([[0, 10], [5, 20], [10, 30]], 10),   // 2 %/s, 70 % left -> 35 s
        stale: estimateRemaining([[0, 0], [100, 50], [130, 80]], 130),  // only the last minute counts
        stalled: estimateRemaining([[0, 10], [10, 30]], 20),  // no news for 10 s: 1 %/s -> 70 s
        tooEarly: estimateRemaining([[0, 10], [1, 11]], 1),
        times: [duration(42), duration(125), duration(3725)],
        words: [stageWords('fit'), stageWords('extract'), stageWords('my_stage')],
      };
    }""")
    assert got["steady"] == pytest.approx(35.0)
    assert got["stale"] == pytest.approx((100 - 80) * 30 / 30)
    assert got["stalled"] == pytest.approx(70.0)
    assert got["tooEarly"] is None
    assert got["times"] == ["42 s", "2 min 05 s", "1 h 02 min"]
    assert got["words"] == ["Learning the surface", "Building the mesh", "My stage"]


@pytest.mark.parametrize("fmt", ["ply", "glb"])
def test_viewer_shows_vertex_colours(blank, tmp_path, fmt):
    """A sphere exported with all-red vertex colours is drawn red; a plain one in the clay colour."""
    import trimesh

    from meshing.export import save_mesh
    from meshing.mesh import Mesh

    sphere = trimesh.creation.icosphere(subdivisions=3)
    drawn = {}
    for name, colors in (("red", np.tile([[230, 20, 20]], (len(sphere.vertices), 1))), ("plain", None)):
        path = save_mesh(Mesh(sphere.vertices, sphere.faces, vertex_colors=None if colors is None
                              else colors.astype(np.uint8)), tmp_path / f"{name}.{fmt}", format=fmt)
        drawn[name] = blank.evaluate("""async ([b64, fmt]) => {
          const { Viewer, meshGeometry } = await import('/web/viewer.js');
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const v = new Viewer(null, { width: 64, height: 64, preserveDrawingBuffer: true, controls: false });
          v.setMesh(await meshGeometry(bytes.buffer, fmt));
          const gl = v.renderer.getContext();
          const px = new Uint8Array(4);
          gl.readPixels(32, 32, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);  // the centre of the sphere
          return { rgb: Array.from(px.slice(0, 3)), vertexColors: v.mesh.material.vertexColors };
        }""", [base64.b64encode(path.read_bytes()).decode(), fmt])
    r, g, b = drawn["red"]["rgb"]
    assert drawn["red"]["vertexColors"] and r > 100 and r > 2 * max(g, b), drawn
    r, g, b = drawn["plain"]["rgb"]
    assert not drawn["plain"]["vertexColors"] and min(r, g, b) > 90 and r - b < 60, drawn  # light clay grey
