"""``PointCloud`` and ``load_point_cloud``: read and validate user point clouds.

Loaders are registered in ``LOADERS`` by lower-case file suffix. A loader only decodes; all
content checks happen once in ``validate_point_cloud``:

* NaN/Inf coordinates are rejected (``non_finite``), not silently dropped: they almost always
  mean a broken export, and silently meshing the rest would hide that.
* Fewer than ``min_points`` -> ``too_few_points``; more than ``max_points`` -> ``too_many_points``
  (formats with a count in their header are checked before the points are read).
* All points identical, or all on one line -> ``degenerate``. Planar clouds are accepted.
* Normals: rescaled to unit length. If *any* normal is zero-length or non-finite the whole
  normal array is dropped (``normals=None``) with an ``InputWarning``, so downstream code
  re-estimates all normals consistently instead of mixing file normals with guesses; files
  that write placeholder ``0 0 0`` normals (a common exporter habit) end up the same way.

Every failure caused by file content surfaces as ``InputError``; parser exceptions from numpy,
zipfile or laspy are wrapped as ``malformed_file``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.io import errors as E
from recon.io.errors import InputError, InputWarning
from recon.io.ply import read_ply_vertices
from recon.registry import lookup, register


def _fail(code: str, detail: str, path: str | Path | None = None) -> InputError:
    # Loaders raise without a path; load_point_cloud attributes the error to the file.
    return InputError(detail, code=code, path=path)


@dataclass
class PointCloud:
    """points: (n, 3) float64; normals: (n, 3) float64 or None; colors: (n, 3) uint8 or None."""

    points: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float64).reshape(-1, 3)
        n = len(self.points)
        if self.normals is not None:
            self.normals = np.ascontiguousarray(self.normals, dtype=np.float64)
            if self.normals.shape != (n, 3):
                raise ValueError(f"normals shape {self.normals.shape} != ({n}, 3)")
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.uint8)
            if self.colors.shape != (n, 3):
                raise ValueError(f"colors shape {self.colors.shape} != ({n}, 3)")

    def __len__(self) -> int:
        return int(self.points.shape[0])


Loader = Callable[[Path, int | None], PointCloud]
LOADERS: dict[str, Loader] = {}
"""Suffix (lower case, with dot) -> loader(path, max_points) returning an unvalidated cloud."""


def load_point_cloud(
    path: str | Path, *, min_points: int = 100, max_points: int | None = None
) -> PointCloud:
    """Load and validate the point cloud at ``path``, choosing the reader by file suffix.

    Raises ``InputError`` (see ``recon.io.errors`` for the codes) for any problem with the file.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(E.NOT_FOUND, "no such file", path)
    if path.stat().st_size == 0:
        raise _fail(E.TOO_FEW_POINTS, "the file is empty (0 points)", path)
    try:
        loader = lookup(LOADERS, path.suffix.lower(), "point cloud format")
    except ValueError as e:
        raise _fail(E.UNSUPPORTED_FORMAT, str(e), path) from None
    try:
        with np.errstate(all="ignore"):  # signalling NaNs warn on cast; validation reports them
            pc = loader(path, max_points)
    except InputError as e:
        err = e.with_path(path)
        raise err from err.__cause__
    except PermissionError:
        raise
    except (ValueError, OSError, EOFError, MemoryError, struct.error) as e:
        raise _fail(E.MALFORMED_FILE, f"could not parse file: {e}", path) from e
    return validate_point_cloud(pc, min_points=min_points, max_points=max_points, path=path)


def validate_point_cloud(
    pc: PointCloud,
    *,
    min_points: int = 100,
    max_points: int | None = None,
    path: str | Path | None = None,
) -> PointCloud:
    """Check ``pc`` as described in the module docstring; returns it with unit normals."""
    n, pts = len(pc), pc.points
    if max_points is not None and n > max_points:
        raise _fail(E.TOO_MANY_POINTS, f"{n} points, more than the limit of {max_points}", path)
    if n < min_points:
        raise _fail(E.TOO_FEW_POINTS, f"only {n} points, at least {min_points} are needed", path)
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        raise _fail(
            E.NON_FINITE,
            f"{int(bad.sum())} of {n} points have NaN or infinite coordinates "
            f"(first at index {int(np.argmax(bad))})",
            path,
        )
    if n == 0:
        return pc
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    with np.errstate(over="ignore"):
        extent = hi - lo
    if not np.isfinite(extent).all():
        raise _fail(E.NON_FINITE, "coordinate range overflows float64", path)
    # Relative tolerance: values that differ only by float rounding count as identical.
    magnitude = max(float(np.abs(lo).max()), float(np.abs(hi).max()))
    if extent.max() <= 1e-9 * magnitude or extent.max() == 0.0:
        raise _fail(E.DEGENERATE, f"all {n} points are identical (zero extent)", path)
    centered = (pts - (lo + hi) / 2) / extent.max()
    eig = np.linalg.eigvalsh(centered.T @ centered / n)
    if eig[1] <= 1e-12 * eig[2]:
        raise _fail(E.DEGENERATE, f"all {n} points lie on one line", path)
    normals = pc.normals
    if normals is not None:
        length = np.linalg.norm(normals, axis=1)
        unusable = ~np.isfinite(length) | (length < 1e-8)
        if unusable.any():
            name = Path(path).name if path is not None else "point cloud"
            warnings.warn(
                f"{name}: {int(unusable.sum())} of {n} normals are zero or non-finite; "
                "ignoring all normals from the file",
                InputWarning,
                stacklevel=2,
            )
            normals = None
        else:
            normals = normals / length[:, None]
    return PointCloud(pts, normals, pc.colors)


def _too_many(n: int, max_points: int | None, what: str) -> None:
    if max_points is not None and n > max_points:
        detail = f"{what} declares {n} points, more than the limit of {max_points}"
        raise _fail(E.TOO_MANY_POINTS, detail)


def _colors_to_uint8(values: np.ndarray, declared: str) -> np.ndarray:
    """Integer colors are 8 bit, or 16 bit if any exceeds 255; float colors are 0..1 or 0..255."""
    values = values.astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if declared[0] in "iu" and top > 255:
        values = values * (255.0 / 65535.0)
    elif declared[0] == "f" and top <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_COLOR_NAMES = (
    ("red", "green", "blue"),
    ("r", "g", "b"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
)


@register(LOADERS, ".ply")
def _load_ply(path: Path, max_points: int | None) -> PointCloud:
    data = read_ply_vertices(path, max_points=max_points)
    cols = data.columns
    if not all(k in cols for k in "xyz"):
        raise _fail(E.MALFORMED_FILE, "PLY vertex element lacks x, y or z")
    points = np.column_stack([cols[k] for k in "xyz"]).astype(np.float64)
    normals = colors = None
    for names in _NORMAL_NAMES:
        if all(k in cols for k in names):
            normals = np.column_stack([cols[k] for k in names]).astype(np.float64)
            break
    for names in _COLOR_NAMES:
        if all(k in cols for k in names):
            stacked = np.column_stack([cols[k] for k in names])
            colors = _colors_to_uint8(stacked, data.types[names[0]])
            break
    return PointCloud(points, normals, colors)


def _read_text(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read().decode("latin-1")  # never fails; bad bytes fail as numbers instead


def _parse_table(text: str, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
        try:
            table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, **kwargs)
        except ValueError as e:
            raise _fail(E.MALFORMED_FILE, f"unparsable numbers: {e}") from e
    return table


@register(LOADERS, ".xyz")
@register(LOADERS, ".txt")
@register(LOADERS, ".pts")
def _load_text(path: Path, max_points: int | None) -> PointCloud:
    """x y z [nx ny nz] per line, whitespace or comma separated, '#' comments.

    A first data line holding a single integer (the point count, as in Leica .pts) is skipped;
    .pts files may also have 4 (x y z intensity) or 7 (x y z intensity r g b) columns.
    """
    text = _read_text(path).replace(",", " ")
    first = re.search(r"^[ \t]*([^#\s][^\r\n]*)", text, re.M)
    if first is not None and re.fullmatch(r"\d+\s*", first.group(1)):
        text = text[: first.start()] + text[first.end() :]
    if max_points is not None:
        _too_many(len(re.findall(r"^[ \t]*[^#\s]", text, re.M)), max_points, "file")
    table = _parse_table(text, comments="#")
    if table.size == 0:
        return PointCloud(np.zeros((0, 3)))
    k = table.shape[1]
    if k == 3:
        return PointCloud(table)
    if k == 6:
        return PointCloud(table[:, :3], table[:, 3:6])
    if path.suffix.lower() == ".pts" and k in (4, 7):
        colors = _colors_to_uint8(table[:, 4:7], "u1") if k == 7 else None
        return PointCloud(table[:, :3], colors=colors)
    raise _fail(E.MALFORMED_FILE, f"expected 3 columns (x y z) or 6 (x y z nx ny nz), found {k}")


def _npy_header(f, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    fmt = np.lib.format
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        shape, fortran, dtype = read(f)
    except Exception as e:  # numpy parses the header with ast and can raise nearly anything
        raise _fail(E.MALFORMED_FILE, f"{what} has a bad .npy header: {e}") from e
    if dtype.kind not in "fiu" or dtype.fields is not None:
        raise _fail(E.MALFORMED_FILE, f"{what} has unsupported dtype {dtype}")
    return shape, fortran, dtype


def _check_shape(shape: tuple, cols: tuple[int, ...], what: str) -> None:
    if len(shape) != 2 or shape[1] not in cols:
        want = " or ".join(f"(n, {c})" for c in cols)
        raise _fail(E.MALFORMED_FILE, f"{what} has shape {shape}, expected {want}")


@register(LOADERS, ".npy")
def _load_npy(path: Path, max_points: int | None) -> PointCloud:
    """A numeric (n, 3) array of points or (n, 6) of points and normals."""
    with open(path, "rb") as f:
        shape, _, dtype = _npy_header(f, "array")
        _check_shape(shape, (3, 6), "array")
        _too_many(shape[0], max_points, "array header")
        need, have = shape[0] * shape[1] * dtype.itemsize, os.fstat(f.fileno()).st_size - f.tell()
        if need > have:
            detail = f"array header declares {shape} ({need} bytes), only {have} bytes follow"
            raise _fail(E.TRUNCATED, detail)
    arr = np.array(np.load(path, mmap_mode="r", allow_pickle=False), dtype=np.float64)
    return PointCloud(arr[:, :3], arr[:, 3:6] if shape[1] == 6 else None)


_NPZ_POINT_KEYS = ("points", "xyz", "vertices")
# Deflate cannot expand data more than ~1032x; a member claiming more is lying, and refusing
# it up front keeps a small hostile file from making numpy allocate a huge array.
_MAX_DEFLATE_RATIO = 1100


@register(LOADERS, ".npz")
def _load_npz(path: Path, max_points: int | None) -> PointCloud:
    """Arrays 'points' (or 'xyz'/'vertices') (n, 3), optional 'normals' and 'colors' (n, 3)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            key = next((k for k in _NPZ_POINT_KEYS if k + ".npy" in names), None)
            if key is None:
                found = sorted(n[:-4] for n in names)
                keys = " / ".join(_NPZ_POINT_KEYS)
                raise _fail(E.MALFORMED_FILE, f"npz has no array named {keys}; found {found}")
            points = _npz_array(zf, key, None, max_points)
            extra = {
                k: _npz_array(zf, k, len(points), None)
                for k in ("normals", "colors")
                if k + ".npy" in names
            }
    except InputError:
        raise
    except Exception as e:  # zipfile raises many types (NotImplementedError, RuntimeError, ...)
        raise _fail(E.MALFORMED_FILE, f"corrupt npz archive: {e!r}") from e
    colors = extra.get("colors")
    if colors is not None:
        colors = _colors_to_uint8(colors, colors.dtype.str[1:])
    normals = extra.get("normals")
    return PointCloud(points, None if normals is None else normals.astype(np.float64), colors)


def _npz_array(zf: zipfile.ZipFile, key: str, n: int | None, max_points) -> np.ndarray:
    info = zf.getinfo(key + ".npy")
    with zf.open(info) as f:
        shape, _, dtype = _npy_header(f, f"array {key!r}")
        header_len = f.tell()
    _check_shape(shape, (3,), f"array {key!r}")
    if n is not None and shape[0] != n:
        detail = f"array {key!r} has {shape[0]} rows but there are {n} points"
        raise _fail(E.MALFORMED_FILE, detail)
    _too_many(shape[0], max_points, f"array {key!r}")
    if shape[0] * 3 * dtype.itemsize > info.file_size - header_len:
        raise _fail(E.TRUNCATED, f"array {key!r} is shorter than its header declares")
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + (1 << 20):
        raise _fail(E.MALFORMED_FILE, f"array {key!r} claims an impossible compression ratio")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


@register(LOADERS, ".obj")
def _load_obj(path: Path, max_points: int | None) -> PointCloud:
    """Vertices of a Wavefront OBJ; ``vn`` normals are used only if they pair up with ``v``.

    They pair up when there are as many ``vn`` as ``v`` lines and every face corner
    ``v/vt/vn`` uses the same index for both (or there are no faces).
    """
    text = _read_text(path)
    v = re.findall(r"^v[ \t]+([^\r\n]*)", text, re.M)
    _too_many(len(v), max_points, "file")
    if not v:
        return PointCloud(np.zeros((0, 3)))
    points = _parse_table("\n".join(v), usecols=(0, 1, 2), comments="#")
    vn = re.findall(r"^vn[ \t]+([^\r\n]*)", text, re.M)
    normals = None
    if len(vn) == len(v):
        faces = "\n".join(re.findall(r"^f[ \t]+.*$", text, re.M))
        # The lookbehind keeps matching linear on long digit runs (no retry mid-number).
        corners = re.findall(r"(?<![\d-])(-?\d+)/-?\d*/(-?\d+)", faces)
        if all(a == b for a, b in corners):
            normals = _parse_table("\n".join(vn), usecols=(0, 1, 2), comments="#")
    return PointCloud(points, normals)


@register(LOADERS, ".off")
def _load_off(path: Path, max_points: int | None) -> PointCloud:
    """Vertices of an OFF mesh (also COFF/NOFF: colors ignored, NOFF normals used)."""
    text = _read_text(path)
    tokens, pos = [], 0
    for _ in range(1000):  # header: keyword and three counts, possibly after comment lines
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        tokens += text[pos:end].split("#", 1)[0].split()
        pos = end + 1
        if len(tokens) >= 4 or pos > len(text):
            break
    if len(tokens) != 4 or tokens[0] not in ("OFF", "COFF", "NOFF", "CNOFF", "NCOFF") or not all(
        t.isdigit() for t in tokens[1:]
    ):
        raise _fail(E.MALFORMED_FILE, "bad OFF header")
    nv = int(tokens[1])
    _too_many(nv, max_points, "OFF header")
    if nv * 6 > len(text) - pos + 1:  # each vertex line needs at least "0 0 0\n"
        detail = f"OFF header declares {nv} vertices, more than the file can hold"
        raise _fail(E.TRUNCATED, detail)
    table = _parse_table(text[pos:], comments="#", max_rows=nv)
    if len(table) < nv or (nv and table.shape[1] < 3):
        detail = f"OFF header declares {nv} vertices, file holds {len(table)}"
        raise _fail(E.TRUNCATED, detail)
    has_normals = "N" in tokens[0] and table.shape[1] >= 6
    return PointCloud(table[:, :3], table[:, 3:6] if has_normals else None)


_STL_DTYPE = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])


@register(LOADERS, ".stl")
def _load_stl(path: Path, max_points: int | None) -> PointCloud:
    """Unique triangle corners of a binary or ascii STL (facet normals are not per-vertex)."""
    with open(path, "rb") as f:
        head = f.read(84)
        size = os.fstat(f.fileno()).st_size
        n_tri = struct.unpack("<I", head[80:84])[0] if len(head) == 84 else -1
        if n_tri >= 0 and size == 84 + 50 * n_tri:
            _too_many(3 * n_tri, max_points, "STL header")
            tris = np.frombuffer(f.read(50 * n_tri), dtype=_STL_DTYPE)["v"]
            corners = tris.reshape(-1, 3).astype(np.float64)
        elif head.lstrip().startswith(b"solid"):
            f.seek(0)
            text = f.read().decode("latin-1")
            v = re.findall(r"^[ \t]*vertex[ \t]+([^\r\n]*)", text, re.M)
            _too_many(len(v), max_points, "file")
            corners = _parse_table("\n".join(v), usecols=(0, 1, 2)) if v else np.zeros((0, 3))
        else:
            detail = "neither a binary STL (size does not match its triangle count) nor ascii"
            raise _fail(E.MALFORMED_FILE, detail)
    return PointCloud(np.unique(corners, axis=0))


@register(LOADERS, ".las")
@register(LOADERS, ".laz")
def _load_las(path: Path, max_points: int | None) -> PointCloud:
    """Scaled x, y, z (and 16-bit RGB if present) of a LAS/LAZ file, read in chunks.

    Chunked reading means memory grows with the points actually present, not with the count a
    (possibly lying) header declares.
    """
    import laspy  # heavy import, only needed here

    _check_las_header(path)
    try:
        with laspy.open(path) as reader:
            hdr = reader.header
            n = int(hdr.point_count)
            _too_many(n, max_points, "LAS header")
            if not hdr.are_points_compressed:
                need = hdr.offset_to_point_data + n * hdr.point_format.size
                if need > os.path.getsize(path):
                    detail = f"LAS header declares {n} points ({need} bytes), file is shorter"
                    raise _fail(E.TRUNCATED, detail)
            has_rgb = {"red", "green", "blue"} <= set(hdr.point_format.dimension_names)
            xyz, rgb = [], []
            for chunk in reader.chunk_iterator(1_000_000):
                xyz.append(np.column_stack([np.asarray(getattr(chunk, k)) for k in "xyz"]))
                if has_rgb:
                    rgb.append(np.column_stack([chunk.red, chunk.green, chunk.blue]))
    except InputError:
        raise
    except Exception as e:  # laspy/lazrs raise many unrelated types for corrupt files
        raise _fail(E.MALFORMED_FILE, f"could not read LAS/LAZ data: {e}") from e
    except BaseException as e:
        # A Rust panic inside lazrs surfaces as pyo3's PanicException, a BaseException.
        if type(e).__name__ != "PanicException":
            raise
        raise _fail(E.MALFORMED_FILE, f"could not decompress LAZ data: {e}") from e
    points = np.concatenate(xyz) if xyz else np.zeros((0, 3))
    if len(points) != n:
        raise _fail(E.TRUNCATED, f"LAS header declares {n} points, file holds {len(points)}")
    colors = _colors_to_uint8(np.concatenate(rgb), "u2") if rgb else None
    return PointCloud(points, colors=colors)


def _check_las_header(path: Path) -> None:
    """Sanity-check the LAS public header before laspy sees it.

    laspy trusts header sizes and record counts; a corrupt one can make it loop over billions
    of VLRs or allocate gigabytes. Every size is checked against the file size here.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(375)
        if len(head) < 227 or head[:4] != b"LASF":
            raise _fail(E.MALFORMED_FILE, "not a LAS file (bad signature or short header)")
        major, minor = head[24], head[25]
        hsize, data_at, n_vlrs, fmt, rec_len = struct.unpack_from("<HIIBH", head, 94)
        problems = []
        if major != 1 or minor > 4:
            problems.append(f"unknown LAS version {major}.{minor}")
        if not 227 <= hsize <= data_at <= size:
            problems.append(
                f"header size {hsize} / point data offset {data_at} do not fit the file size {size}"
            )
        elif n_vlrs * 54 > data_at - hsize:  # each VLR has a 54-byte header
            problems.append(f"{n_vlrs} VLRs cannot fit before the point data")
        if fmt & 0x3F > 10 or rec_len == 0:
            problems.append(f"bad point format {fmt & 0x3F} / record length {rec_len}")
        if not problems and minor >= 4 and hsize >= 375:
            evlr_at, n_evlrs = struct.unpack_from("<QI", head, 235)
            if n_evlrs and (evlr_at > size or n_evlrs * 60 > size - evlr_at):
                problems.append(f"{n_evlrs} extended VLRs cannot fit in the file")
        if not problems and fmt & 0x80:  # LAZ: the chunk table offset starts the point data
            f.seek(data_at)
            raw = f.read(8)
            table_at = struct.unpack("<q", raw)[0] if len(raw) == 8 else -2
            if table_at != -1:
                f.seek(max(table_at, 0))
                raw = f.read(8)
                if not data_at + 8 <= table_at <= size - 8 or len(raw) < 8:
                    problems.append("LAZ chunk table offset lies outside the file")
                elif struct.unpack("<II", raw)[1] > size:
                    problems.append("LAZ chunk table declares more chunks than the file holds")
    if problems:
        raise _fail(E.MALFORMED_FILE, "corrupt LAS header: " + "; ".join(problems))
