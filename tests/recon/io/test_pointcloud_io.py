"""Loaders in recon.io: every format and flavour round-trips; every bad input is an InputError."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from recon.io import LOADERS, InputError, InputWarning, PointCloud, load_point_cloud

TYPE_NAMES = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int", "u2": "ushort",
              "i1": "char", "i2": "short", "u4": "uint"}  # fmt: skip


def cloud(n=500, seed=0):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [10.0, -3.0, 2.0]
    nrm = rng.normal(size=(n, 3))
    return pts, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)


def write_ply(path, fmt, props, *, before=(), after=(), header_extra="", newline="\n"):
    """Write a PLY file.

    props: list of (name, numpy type code, values) for the vertex element. before/after: extra
    elements, each (name, [(prop name, type code or ('list', count code, item code))], rows)
    where rows is a list of tuples (lists given as Python lists).
    """
    n = len(props[0][2])
    lines = ["ply", f"format {fmt} 1.0", "comment written by test"]
    if header_extra:
        lines.append(header_extra)

    def decl(name, count, plist):
        lines.append(f"element {name} {count}")
        for pname, t in plist:
            if isinstance(t, tuple):
                lines.append(f"property list {TYPE_NAMES[t[1]]} {TYPE_NAMES[t[2]]} {pname}")
            else:
                lines.append(f"property {TYPE_NAMES[t]} {pname}")

    for name, plist, rows in before:
        decl(name, len(rows), plist)
    decl("vertex", n, [(p, t) for p, t, _ in props])
    for name, plist, rows in after:
        decl(name, len(rows), plist)
    lines.append("end_header")
    head = (newline.join(lines) + newline).encode("ascii")
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)

    def rows_bytes(plist, rows):
        out = io.BytesIO()
        for row in rows:
            if order is None:
                toks = []
                for (_, t), v in zip(plist, row):
                    is_list = isinstance(t, tuple)
                    toks += [str(len(v)), *map(str, v)] if is_list else [repr(float(v))]
                out.write((" ".join(toks) + "\n").encode())
            else:
                for (_, t), v in zip(plist, row):
                    if isinstance(t, tuple):
                        out.write(np.array([len(v)], order + t[1]).tobytes())
                        out.write(np.array(v, order + t[2]).tobytes())
                    else:
                        out.write(np.array([v], order + t).tobytes())
        return out.getvalue()

    body = b"".join(rows_bytes(plist, rows) for _, plist, rows in before)
    if order is None:
        table = np.column_stack([np.asarray(v, np.float64) for _, _, v in props])
        buf = io.StringIO()
        np.savetxt(buf, table, fmt="%.17g")
        body += buf.getvalue().encode()
    else:
        arr = np.empty(n, [(f"f{i}", order + t) for i, (_, t, _) in enumerate(props)])
        for i, (_, _, v) in enumerate(props):
            arr[f"f{i}"] = v
        body += arr.tobytes()
    body += b"".join(rows_bytes(plist, rows) for _, plist, rows in after)
    path.write_bytes(head + body)
    return path


def xyz_props(pts, t="f4", normals=None):
    props = [(k, t, pts[:, i]) for i, k in enumerate("xyz")]
    if normals is not None:
        props += [(k, t, normals[:, i]) for i, k in enumerate(("nx", "ny", "nz"))]
    return props


FACES = ("face", [("vertex_indices", ("list", "u1", "i4"))], [([0, 1, 2],), ([2, 3, 0],)])
FORMATS = ["ascii", "binary_little_endian", "binary_big_endian"]


# ---------------------------------------------------------------- PLY round trips


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("with_normals", [False, True])
def test_ply_round_trip(tmp_path, fmt, with_normals):
    pts, nrm = cloud()
    path = write_ply(tmp_path / "c.ply", fmt, xyz_props(pts, "f8", nrm if with_normals else None))
    pc = load_point_cloud(path)
    np.testing.assert_array_equal(pc.points, pts)
    assert pc.points.dtype == np.float64 and pc.colors is None
    if with_normals:
        np.testing.assert_allclose(pc.normals, nrm, atol=1e-12)
    else:
        assert pc.normals is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_ply_extra_properties_colors_and_other_elements(tmp_path, fmt):
    pts, nrm = cloud()
    n = len(pts)
    rgb = np.random.default_rng(1).integers(0, 256, size=(n, 3))
    props = [("intensity", "u2", np.arange(n) % 65535)] + xyz_props(pts, "f4", nrm)
    props += [("red", "u1", rgb[:, 0]), ("green", "u1", rgb[:, 1]), ("blue", "u1", rgb[:, 2])]
    props += [("alpha", "u1", np.full(n, 255)), ("quality", "f8", np.linspace(0, 1, n))]
    # A variable-length list element *before* the vertex element forces the row-walking path.
    before = [("camera", [("id", "i4"), ("view", ("list", "u1", "f4"))], [(1, [0.5]), (2, [])])]
    after = [FACES, ("edge", [("a", "i4"), ("b", "i4")], [(0, 1)])]
    path = write_ply(tmp_path / "c.ply", fmt, props, before=before, after=after)
    pc = load_point_cloud(path)
    if fmt == "ascii":  # the text carries full precision even though the type says float
        np.testing.assert_array_equal(pc.points, pts)
    else:
        np.testing.assert_array_equal(pc.points, pts.astype(np.float32))
    np.testing.assert_allclose(pc.normals, nrm, atol=1e-6)
    np.testing.assert_array_equal(pc.colors, rgb)
    assert pc.colors.dtype == np.uint8


@pytest.mark.parametrize("fmt", FORMATS)
def test_ply_vertex_with_list_property(tmp_path, fmt):
    pts, _ = cloud(n=150)
    rows = [tuple(p) + ([1] * (i % 3),) for i, p in enumerate(pts)]
    plist = [("x", "f8"), ("y", "f8"), ("z", "f8"), ("tags", ("list", "u1", "i4"))]
    # Written as an "other" element and renamed, so the helper's list support can be reused.
    path = write_ply(tmp_path / "c.ply", fmt, [("dummy", "u1", [])], after=[("pts", plist, rows)])
    data = path.read_bytes().replace(b"element vertex 0\nproperty uchar dummy\n", b"")
    path.write_bytes(data.replace(b"element pts", b"element vertex"))
    np.testing.assert_array_equal(load_point_cloud(path).points, pts)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian"])
def test_ply_crlf_header_and_float_colors(tmp_path, fmt):
    pts, _ = cloud()
    col = np.random.default_rng(2).random((len(pts), 3)).astype(np.float32)
    props = xyz_props(pts) + [(k, "f4", col[:, i]) for i, k in enumerate(("r", "g", "b"))]
    path = write_ply(tmp_path / "c.ply", fmt, props, newline="\r\n")
    pc = load_point_cloud(path)
    np.testing.assert_allclose(pc.points, pts, rtol=1e-6)
    np.testing.assert_array_equal(pc.colors, np.rint(col * 255))


def test_two_million_point_binary_ply(tmp_path):
    n = 2_000_000
    rng = np.random.default_rng(3)
    pts = rng.uniform(-5, 5, size=(n, 3)).astype(np.float32)
    path = write_ply(tmp_path / "big.ply", "binary_little_endian", xyz_props(pts), after=[FACES])
    pc = load_point_cloud(path, max_points=n)
    assert pc.points.shape == (n, 3)
    np.testing.assert_array_equal(pc.points[[0, 12345, n - 1]], pts[[0, 12345, n - 1]])


# ---------------------------------------------------------------- other formats


def test_xyz_txt_pts_variants(tmp_path):
    pts, nrm = cloud()
    buf = io.StringIO()
    np.savetxt(buf, pts, fmt="%.17g")
    (tmp_path / "a.xyz").write_text("# scanner export\n\n" + buf.getvalue())
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.xyz").points, pts)

    buf = io.StringIO()
    np.savetxt(buf, np.hstack([pts, nrm]), fmt="%.17g", delimiter=", ")
    (tmp_path / "b.txt").write_text(buf.getvalue())
    pc = load_point_cloud(tmp_path / "b.txt")
    np.testing.assert_array_equal(pc.points, pts)
    np.testing.assert_allclose(pc.normals, nrm, atol=1e-12)

    rgb = np.random.default_rng(4).integers(0, 256, size=(len(pts), 3))
    buf = io.StringIO()
    np.savetxt(buf, np.hstack([pts, np.ones((len(pts), 1)), rgb]), fmt="%.17g")
    (tmp_path / "c.pts").write_text(f"{len(pts)}\n" + buf.getvalue())
    pc = load_point_cloud(tmp_path / "c.pts")
    np.testing.assert_array_equal(pc.points, pts)
    np.testing.assert_array_equal(pc.colors, rgb)


def test_npy_and_npz(tmp_path):
    pts, nrm = cloud()
    np.save(tmp_path / "a.npy", pts.astype(np.float32))
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.npy").points, pts.astype("f4"))
    np.save(tmp_path / "b.npy", np.hstack([pts, nrm]))
    pc = load_point_cloud(tmp_path / "b.npy")
    np.testing.assert_array_equal(pc.points, pts)
    np.testing.assert_allclose(pc.normals, nrm)
    np.savez_compressed(tmp_path / "c.npz", points=pts, normals=nrm)
    pc = load_point_cloud(tmp_path / "c.npz")
    np.testing.assert_array_equal(pc.points, pts)
    np.testing.assert_allclose(pc.normals, nrm)
    for key in ("xyz", "vertices"):
        np.savez(tmp_path / f"{key}.npz", **{key: pts}, other=np.zeros(3))
        pc = load_point_cloud(tmp_path / f"{key}.npz")
        np.testing.assert_array_equal(pc.points, pts)
        assert pc.normals is None


def obj_text(pts, nrm=None, faces=""):
    lines = ["# exported", "o thing"] + [f"v {x} {y} {z}" for x, y, z in pts.tolist()]
    if nrm is not None:
        lines += [f"vn {x} {y} {z}" for x, y, z in nrm.tolist()]
    return "\r\n".join(lines) + "\r\n" + faces


def test_obj(tmp_path):
    pts, nrm = cloud()
    (tmp_path / "a.obj").write_text(obj_text(pts, nrm, "f 1//1 2//2 3//3\n"))
    pc = load_point_cloud(tmp_path / "a.obj")
    np.testing.assert_array_equal(pc.points, pts)
    np.testing.assert_allclose(pc.normals, nrm, atol=1e-12)
    (tmp_path / "b.obj").write_text(obj_text(pts, nrm[:-1]))  # count mismatch
    assert load_point_cloud(tmp_path / "b.obj").normals is None
    (tmp_path / "c.obj").write_text(obj_text(pts, nrm, "f 1//2 2//1 3//3\n"))  # not paired
    assert load_point_cloud(tmp_path / "c.obj").normals is None


def test_off_and_stl(tmp_path):
    pts, _ = cloud()
    (tmp_path / "a.off").write_text(
        "OFF\n# comment\n" + f"{len(pts)} 1 0\n"
        + "".join(f"{x} {y} {z}\n" for x, y, z in pts.tolist()) + "3 0 1 2\n"
    )  # fmt: skip
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "a.off").points, pts)

    tris = pts[: 498].reshape(-1, 3, 3)  # 166 triangles, 498 distinct corners
    rec = np.zeros(len(tris), [("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    rec["v"] = tris
    (tmp_path / "b.stl").write_bytes(b"\0" * 80 + np.uint32(len(tris)).tobytes() + rec.tobytes())
    got = load_point_cloud(tmp_path / "b.stl").points
    np.testing.assert_array_equal(got, np.unique(tris.reshape(-1, 3).astype("f4"), axis=0))
    facets = [
        "facet normal 0 0 1\nouter loop\n"
        + "".join(f"vertex {x} {y} {z}\n" for x, y, z in t.tolist())
        + "endloop\nendfacet\n"
        for t in tris
    ]
    text = "solid t\n" + "".join(facets) + "endsolid t\n"
    (tmp_path / "c.stl").write_text(text)
    np.testing.assert_array_equal(load_point_cloud(tmp_path / "c.stl").points,
                                  np.unique(tris.reshape(-1, 3), axis=0))  # fmt: skip


def write_las(path, pts, rgb=None):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=3 if rgb is not None else 1, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = pts.min(axis=0)
    las = laspy.LasData(header)
    las.x, las.y, las.z = pts[:, 0], pts[:, 1], pts[:, 2]
    if rgb is not None:
        las.red, las.green, las.blue = (rgb * 257).T.astype(np.uint16)
    las.write(path)
    return path


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_laz(tmp_path, suffix):
    pts, _ = cloud()
    rgb = np.random.default_rng(5).integers(0, 256, size=(len(pts), 3))
    pc = load_point_cloud(write_las(tmp_path / f"a{suffix}", pts, rgb))
    np.testing.assert_allclose(pc.points, pts, atol=0.0005 + 1e-9)
    np.testing.assert_array_equal(pc.colors, rgb)
    assert pc.normals is None


def test_every_registered_suffix_is_covered():
    assert set(LOADERS) == {".ply", ".xyz", ".txt", ".pts", ".npy", ".npz", ".obj", ".off",
                            ".stl", ".las", ".laz"}  # fmt: skip


# ---------------------------------------------------------------- errors


def expect(code, path, match, **kw):
    with pytest.raises(InputError, match=match) as info:
        load_point_cloud(path, **kw)
    assert info.value.code == code
    assert str(info.value).startswith(os.path.basename(path) + ": ")
    return info.value


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "a.e57").write_bytes(b"whatever")
    err = expect("unsupported_format", tmp_path / "a.e57", r"unknown point cloud format '\.e57'")
    assert ".ply" in str(err)
    expect("not_found", tmp_path / "nope.ply", "no such file")


@pytest.mark.parametrize(
    "header, match",
    [
        ("plx\nformat ascii 1.0\nend_header\n", "not a PLY file"),
        ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n", "no 'end_header'"),
        ("ply\nformat binary_middle_endian 1.0\nend_header\n", "bad PLY format line"),
        ("ply\nelement vertex 3\nproperty float x\nend_header\n", "no 'format' line"),
        ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float128 x\nend_header\n",
         "bad PLY property line"),
        ("ply\nformat ascii 1.0\nelement vertex -3\nend_header\n", "bad count '-3'"),
        ("ply\nformat ascii 1.0\nelement vertex lots\nend_header\n", "bad count 'lots'"),
        ("ply\nformat ascii 1.0\nproperty float x\nend_header\n", "before any element"),
        ("ply\nformat ascii 1.0\nelement face 0\nproperty list float int i\nend_header\n",
         "non-integer length type"),
        ("ply\nformat ascii 1.0\nelement face 0\nproperty float x\nend_header\n",
         "no 'vertex' element"),
        (("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
          "end_header\n1 2\n"), "lacks x, y or z"),
        ("ply\nformat ascii 1.0\nbogus line\nend_header\n", "unknown PLY header keyword"),
        (("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
          "property float z\nend_header\n1 2 3\n1 2 oops\n"), "bad ascii PLY vertex data"),
        (("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
          "property float z\nend_header\n1 2 3 4\n1 2 3 4\n"), "rows have 4 values"),
    ],
)  # fmt: skip
def test_malformed_ply(tmp_path, header, match):
    path = tmp_path / "bad.ply"
    path.write_bytes(header.encode())
    expect("malformed_file", path, match)


def test_ply_header_without_newlines_is_bounded(tmp_path):
    path = tmp_path / "bad.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\ncomment " + b"x" * (3 << 20))
    expect("malformed_file", path, "longer than 1 MiB")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_ply(tmp_path, fmt):
    pts, _ = cloud()
    path = write_ply(tmp_path / "t.ply", fmt, xyz_props(pts))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data) // 4])
    expect("truncated", path, r"declares 500 vertices")


@pytest.mark.parametrize("fmt", FORMATS)
def test_absurd_vertex_count_rejected_before_allocating(tmp_path, fmt):
    pts, _ = cloud()
    path = write_ply(tmp_path / "t.ply", fmt, xyz_props(pts))
    huge = b"element vertex 1" + b"0" * 12
    path.write_bytes(path.read_bytes().replace(b"element vertex 500", huge))
    expect("truncated", path, r"declares 1000000000000 vertices needing at least")
    expect("too_many_points", path, "more than the limit of 5000", max_points=5000)


def test_truncated_element_after_vertices(tmp_path):
    pts, _ = cloud()
    edges = ("edge", [("a", "i4"), ("b", "i4")], [(0, 1), (1, 2)])
    path = write_ply(tmp_path / "t.ply", "binary_little_endian", xyz_props(pts), after=[edges])
    path.write_bytes(path.read_bytes()[:-5])
    expect("truncated", path, r"declares 500 vertices \(plus other elements\) needing at least")


def test_text_errors(tmp_path):
    (tmp_path / "a.xyz").write_text("1 2 3\n4 5 six\n")
    expect("malformed_file", tmp_path / "a.xyz", "could not convert string 'six'")
    (tmp_path / "b.xyz").write_text("1 2 3 4\n4 5 6 7\n")
    expect("malformed_file", tmp_path / "b.xyz", "expected 3 columns .* found 4")
    (tmp_path / "c.xyz").write_text("1 2 3\n4 5\n")
    expect("malformed_file", tmp_path / "c.xyz", "number of columns changed")
    (tmp_path / "d.xyz").write_bytes(b"")
    expect("too_few_points", tmp_path / "d.xyz", "the file is empty")
    (tmp_path / "e.xyz").write_bytes(np.random.default_rng(0).bytes(5000))
    expect("malformed_file", tmp_path / "e.xyz", "unparsable numbers")


def test_non_finite_coordinates(tmp_path):
    pts, _ = cloud(n=200)
    pts[7, 1] = np.nan
    pts[50, 2] = np.inf
    np.save(tmp_path / "a.npy", pts)
    expect("non_finite", tmp_path / "a.npy", r"2 of 200 points have NaN or infinite .*index 7")
    path = write_ply(tmp_path / "a.ply", "ascii", xyz_props(pts, "f8"))
    expect("non_finite", path, "2 of 200 points")


def test_too_few_and_too_many_points(tmp_path):
    pts, _ = cloud(n=50)
    np.save(tmp_path / "a.npy", pts)
    expect("too_few_points", tmp_path / "a.npy", "only 50 points, at least 100 are needed")
    assert len(load_point_cloud(tmp_path / "a.npy", min_points=50)) == 50
    expect("too_many_points", tmp_path / "a.npy", "more than the limit of 10", min_points=1,
           max_points=10)  # fmt: skip


def test_degenerate(tmp_path):
    np.save(tmp_path / "same.npy", np.tile([1.5, 2.0, -3.0], (300, 1)))
    expect("degenerate", tmp_path / "same.npy", "all 300 points are identical")
    t = np.linspace(0, 1, 300)[:, None]
    np.save(tmp_path / "line.npy", t * [1.0, 2.0, 3.0] + [5.0, 0.0, 0.0])
    expect("degenerate", tmp_path / "line.npy", "all 300 points lie on one line")
    plane = np.random.default_rng(0).random((300, 3)) * [1, 1, 0]
    np.save(tmp_path / "plane.npy", plane)
    assert len(load_point_cloud(tmp_path / "plane.npy")) == 300  # planar scans are fine


def test_zero_normals_are_dropped_with_warning(tmp_path):
    pts, nrm = cloud()
    nrm[3] = 0.0
    np.save(tmp_path / "a.npy", np.hstack([pts, nrm]))
    with pytest.warns(InputWarning, match="1 of 500 normals are zero"):
        pc = load_point_cloud(tmp_path / "a.npy")
    assert pc.normals is None
    np.save(tmp_path / "b.npy", np.hstack([pts, 3.0 * np.abs(nrm) + 0.1]))
    pc = load_point_cloud(tmp_path / "b.npy")
    np.testing.assert_allclose(np.linalg.norm(pc.normals, axis=1), 1.0)


def test_npy_npz_errors(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 4)))
    expect("malformed_file", tmp_path / "a.npy", r"shape \(10, 4\), expected \(n, 3\) or \(n, 6\)")
    np.save(tmp_path / "b.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    expect("malformed_file", tmp_path / "b.npy", "unsupported dtype object")
    np.save(tmp_path / "c.npy", np.random.default_rng(0).random((400, 3)))
    (tmp_path / "c.npy").write_bytes((tmp_path / "c.npy").read_bytes()[:-100])
    expect("truncated", tmp_path / "c.npy", r"declares \(400, 3\)")
    (tmp_path / "d.npy").write_bytes(b"not numpy at all")
    expect("malformed_file", tmp_path / "d.npy", "could not parse")

    np.savez(tmp_path / "e.npz", foo=np.zeros((10, 3)))
    expect("malformed_file", tmp_path / "e.npz", r"no array named points / xyz / vertices; .*foo")
    np.savez(tmp_path / "f.npz", points=np.zeros((10, 3)) + np.arange(10)[:, None],
             normals=np.ones((9, 3)))  # fmt: skip
    expect("malformed_file", tmp_path / "f.npz", "'normals' has 9 rows but there are 10")
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 broken zip")
    expect("malformed_file", tmp_path / "g.npz", "corrupt npz archive")


def test_npz_with_lying_header_does_not_allocate(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)}
    )
    with zipfile.ZipFile(tmp_path / "a.npz", "w") as zf:
        zf.writestr("points.npy", header.getvalue() + b"\0" * 64)
    expect("truncated", tmp_path / "a.npz", "shorter than its header declares")


def test_las_errors(tmp_path):
    pts, _ = cloud()
    path = write_las(tmp_path / "a.las", pts)
    path.write_bytes(path.read_bytes()[:-200])
    expect("truncated", path, "LAS header declares 500 points")
    path = write_las(tmp_path / "b.laz", pts)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(InputError) as info:
        load_point_cloud(path)
    assert info.value.code in ("truncated", "malformed_file")
    (tmp_path / "c.las").write_bytes(b"LASF" + b"\0" * 50)
    expect("malformed_file", tmp_path / "c.las", "not a LAS file")
    # A corrupt VLR count once made laspy loop and allocate without bound.
    data = bytearray(write_las(tmp_path / "d.laz", pts).read_bytes())
    data[100:104] = (2_000_000_000).to_bytes(4, "little")
    (tmp_path / "d.laz").write_bytes(bytes(data))
    expect("malformed_file", tmp_path / "d.laz", "corrupt LAS header: 2000000000 VLRs cannot fit")


def mutations(data: bytes, rng, count):
    for _ in range(count):
        b = bytearray(data)
        kind = rng.integers(4)
        if kind == 0:  # cut
            yield bytes(b[: rng.integers(len(b))])
        elif kind == 1:  # flip bytes
            for i in rng.integers(len(b), size=8):
                b[i] = rng.integers(256)
            yield bytes(b)
        elif kind == 2:  # a header count made huge or negative
            yield data.replace(b" 500", rng.choice([b" 4294967295", b" -1", b" 99999999999"]))
        else:  # a random chunk deleted
            i = rng.integers(len(b))
            yield bytes(b[:i] + b[i + rng.integers(1, 64) :])


@pytest.mark.filterwarnings("ignore::recon.io.errors.InputWarning")
@pytest.mark.parametrize("suffix", [".ply", ".xyz", ".npy", ".npz", ".obj", ".off", ".las"])
def test_fuzzed_files_only_raise_input_error(tmp_path, suffix):
    pts, nrm = cloud()
    src = tmp_path / f"src{suffix}"
    if suffix == ".ply":
        write_ply(src, "binary_little_endian", xyz_props(pts, "f4", nrm), after=[FACES])
    elif suffix == ".xyz":
        np.savetxt(src, pts)
    elif suffix == ".npy":
        np.save(src, pts)
    elif suffix == ".npz":
        np.savez_compressed(src, points=pts, normals=nrm)
    elif suffix == ".obj":
        src.write_text(obj_text(pts, nrm))
    elif suffix == ".off":
        src.write_text("OFF\n500 0 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in pts))
    else:
        write_las(src, pts)
    rng = np.random.default_rng(0)
    target = tmp_path / f"fuzz{suffix}"
    for data in mutations(src.read_bytes(), rng, 150):
        target.write_bytes(data)
        try:
            pc = load_point_cloud(target, min_points=1)
        except InputError as e:
            assert e.code in ("malformed_file", "truncated", "too_few_points", "non_finite",
                              "degenerate", "unsupported_format")  # fmt: skip
        else:
            assert isinstance(pc, PointCloud) and np.isfinite(pc.points).all()
