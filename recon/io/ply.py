"""A defensive PLY reader for the ``vertex`` element (ascii, binary little/big endian).

Only the vertex element is decoded; other elements (faces, edges, custom ones) are skipped,
whatever their property types. Binary scalar-only elements are read with one structured-dtype
``np.frombuffer`` and ascii ones with one ``np.loadtxt`` call, so millions of points load in
well under a second. Hostile input is bounded: the header is capped at 1 MiB, and before any
array is allocated the element counts are checked against the bytes that actually follow the
header (a binary row needs at least its fixed byte size, an ascii row at least two characters
per token), so "10^12 vertices" in a 1 kB file is rejected as truncated without allocating.
Elements after the vertex element are not decoded, only checked against their minimum size
(exact for binary elements without lists), so a file cut short in its faces is usually
rejected as truncated too: it is a damaged upload, even if its vertices are intact.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from recon.io.errors import (
    MALFORMED_FILE,
    TOO_MANY_POINTS,
    TRUNCATED,
    UNSUPPORTED_FORMAT,
    InputError,
)

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_STRUCT = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I"}
_MAX_HEADER_BYTES = 1 << 20
# Rows walked one by one in Python (only for variable-length list elements); beyond this the
# walk would take minutes, so such files are refused rather than left to look like a hang.
_MAX_SLOW_ROWS = 2_000_000
VERTEX_ELEMENTS = ("vertex", "vertices")


@dataclass(frozen=True)
class PlyProperty:
    name: str
    dtype: str
    """numpy type code without byte order, e.g. 'f4'; for a list, the item type."""
    count_dtype: str | None = None
    """For a list property, the type of its length prefix; None for a scalar."""

    @property
    def is_list(self) -> bool:
        return self.count_dtype is not None


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[PlyProperty, ...]

    @property
    def has_lists(self) -> bool:
        return any(p.is_list for p in self.properties)

    def min_row_bytes(self, ascii_format: bool) -> int:
        """Fewest bytes one row can occupy (lists taken as empty)."""
        if ascii_format:
            return 2 * len(self.properties)  # each token needs a character and a separator
        return sum(np.dtype(p.count_dtype or p.dtype).itemsize for p in self.properties)


@dataclass(frozen=True)
class PlyHeader:
    format: str
    elements: tuple[PlyElement, ...]
    data_offset: int


@dataclass
class PlyVertexData:
    """The vertex element's scalar properties, by name.

    ``columns`` holds 1-D arrays in the declared type for binary files and float64 for ascii
    ones (so no precision the text carried is lost); ``types`` the declared numpy type codes.
    """

    columns: dict[str, np.ndarray]
    types: dict[str, str]
    count: int


def _malformed(msg: str, path: Path) -> InputError:
    return InputError(msg, code=MALFORMED_FILE, path=path)


def read_header(f: BinaryIO, path: Path) -> PlyHeader:
    """Parse the header of an open PLY file, leaving ``f`` at the first data byte."""
    first = f.readline(16)
    if first.strip() != b"ply":
        raise _malformed("not a PLY file (first line is not 'ply')", path)
    fmt: str | None = None
    elements: list[tuple[str, int, list[PlyProperty]]] = []
    used = len(first)
    while True:
        raw = f.readline(_MAX_HEADER_BYTES)
        used += len(raw)
        if not raw:
            raise _malformed("PLY header has no 'end_header' line", path)
        if used > _MAX_HEADER_BYTES:
            raise _malformed("PLY header is longer than 1 MiB", path)
        tok = raw.decode("latin-1").split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        key = tok[0]
        if key == "end_header":
            break
        if key == "format":
            if len(tok) != 3 or tok[1] not in _FORMATS:
                raise _malformed(f"bad PLY format line {' '.join(tok)!r}", path)
            fmt = tok[1]
        elif key == "element":
            if len(tok) != 3:
                raise _malformed(f"bad PLY element line {' '.join(tok)!r}", path)
            try:
                count = int(tok[2])
            except ValueError:
                count = -1
            if count < 0:
                raise _malformed(f"bad count {tok[2]!r} for PLY element {tok[1]!r}", path)
            elements.append((tok[1], count, []))
        elif key == "property":
            if not elements:
                raise _malformed("PLY property declared before any element", path)
            elements[-1][2].append(_parse_property(tok, path))
        else:
            raise _malformed(f"unknown PLY header keyword {key!r}", path)
    if fmt is None:
        raise _malformed("PLY header has no 'format' line", path)
    for name, count, props in elements:
        if count > 0 and not props:
            raise _malformed(f"PLY element {name!r} has rows but no properties", path)
    elems = tuple(PlyElement(n, c, tuple(p)) for n, c, p in elements)
    return PlyHeader(fmt, elems, f.tell())


def _parse_property(tok: list[str], path: Path) -> PlyProperty:
    if len(tok) == 3 and tok[1] in _TYPES:
        return PlyProperty(tok[2], _TYPES[tok[1]])
    if len(tok) == 5 and tok[1] == "list" and tok[2] in _TYPES and tok[3] in _TYPES:
        if _TYPES[tok[2]][0] not in "iu":
            raise _malformed(f"PLY list {tok[4]!r} has non-integer length type {tok[2]!r}", path)
        return PlyProperty(tok[4], _TYPES[tok[3]], _TYPES[tok[2]])
    raise _malformed(f"bad PLY property line {' '.join(tok)!r}", path)


def read_ply_vertices(path: Path, *, max_points: int | None = None) -> PlyVertexData:
    """Read the scalar properties of the vertex element of the PLY file at ``path``.

    Raises ``InputError`` (malformed_file, truncated, too_many_points, unsupported_format).
    """
    with open(path, "rb") as f:
        header = read_header(f, path)
        size = os.fstat(f.fileno()).st_size
        ascii_format = header.format == "ascii"
        vidx = next(
            (i for i, e in enumerate(header.elements) if e.name in VERTEX_ELEMENTS), None
        )
        if vidx is None:
            raise _malformed("PLY file has no 'vertex' element", path)
        vertex = header.elements[vidx]
        if max_points is not None and vertex.count > max_points:
            raise InputError(
                f"PLY header declares {vertex.count} vertices, more than the limit of "
                f"{max_points}",
                code=TOO_MANY_POINTS,
                path=path,
            )
        need = sum(e.count * e.min_row_bytes(ascii_format) for e in header.elements)
        have = size - header.data_offset
        if need - (1 if ascii_format else 0) > have:
            raise InputError(
                f"PLY header declares {vertex.count} vertices"
                + ("" if len(header.elements) == 1 else " (plus other elements)")
                + f" needing at least {need} bytes, but only {have} bytes follow the header",
                code=TRUNCATED,
                path=path,
            )
        if ascii_format:
            text = f.read().decode("latin-1")
            rows_before = sum(e.count for e in header.elements[:vidx])
            return _ascii_vertices(text, rows_before, vertex, path)
        order = _FORMATS[header.format]
        before = header.elements[:vidx]
        if not vertex.has_lists and not any(e.has_lists for e in before):
            # Common case: seek straight to the vertex block, read only it.
            skip = sum(e.count * e.min_row_bytes(False) for e in before)
            f.seek(header.data_offset + skip)
            buf = f.read(vertex.count * vertex.min_row_bytes(False))
            pos = 0
        else:
            buf = f.read()
            pos = 0
            for e in before:
                pos = _binary_element(buf, pos, e, order, path)[1]
        cols = _binary_element(buf, pos, vertex, order, path)[0]
    return PlyVertexData(cols, {p.name: p.dtype for p in vertex.properties}, vertex.count)


def _binary_element(
    buf: bytes, pos: int, elem: PlyElement, order: str, path: Path
) -> tuple[dict[str, np.ndarray], int]:
    """Decode ``elem`` starting at ``buf[pos]``; returns (scalar columns, end position)."""
    if elem.count == 0:
        return {p.name: np.zeros(0, p.dtype) for p in elem.properties if not p.is_list}, pos
    if not elem.has_lists:
        dtype = np.dtype([(f"f{i}", order + p.dtype) for i, p in enumerate(elem.properties)])
        return _fixed_rows(buf, pos, elem, dtype, path, {})
    # Lists almost always have one length throughout (triangles): guess it from the first
    # row and verify every row's length prefix in one vectorised comparison.
    fields, off, lengths = [], pos, {}
    for i, p in enumerate(elem.properties):
        if p.is_list:
            n = _read_count(buf, off, order + p.count_dtype, elem, path)
            fields += [(f"n{i}", order + p.count_dtype), (f"f{i}", order + p.dtype, (n,))]
            lengths[f"n{i}"] = n
            off += np.dtype(p.count_dtype).itemsize + n * np.dtype(p.dtype).itemsize
        else:
            fields.append((f"f{i}", order + p.dtype))
            off += np.dtype(p.dtype).itemsize
    if (off - pos) * elem.count <= len(buf) - pos:
        try:
            return _fixed_rows(buf, pos, elem, np.dtype(fields), path, lengths)
        except _NotUniform:
            pass
    return _walk_rows(buf, pos, elem, order, path)


class _NotUniform(Exception):
    pass


def _fixed_rows(buf, pos, elem, dtype, path, lengths) -> tuple[dict[str, np.ndarray], int]:
    end = pos + elem.count * dtype.itemsize
    if end > len(buf):
        raise _truncated(elem, path)
    arr = np.frombuffer(buf, dtype=dtype, count=elem.count, offset=pos)
    if any((arr[k] != n).any() for k, n in lengths.items()):
        raise _NotUniform
    cols = {
        p.name: arr[f"f{i}"].astype(p.dtype)  # copy to native byte order
        for i, p in enumerate(elem.properties)
        if not p.is_list
    }
    return cols, end


def _read_count(buf: bytes, off: int, code: str, elem: PlyElement, path: Path) -> int:
    size = np.dtype(code).itemsize
    if off + size > len(buf):
        raise _truncated(elem, path)
    n = int(np.frombuffer(buf, dtype=code, count=1, offset=off)[0])
    if n < 0:
        raise _malformed(f"negative list length in PLY element {elem.name!r}", path)
    return n


def _walk_rows(buf, pos, elem, order, path) -> tuple[dict[str, np.ndarray], int]:
    """Row-by-row walk for lists of varying length; scalars are gathered afterwards."""
    if elem.count > _MAX_SLOW_ROWS:
        raise InputError(
            f"PLY element {elem.name!r} has {elem.count} rows with lists of varying length; "
            f"at most {_MAX_SLOW_ROWS} such rows are supported",
            code=UNSUPPORTED_FORMAT,
            path=path,
        )
    steps = []
    for p in elem.properties:
        counter = struct.Struct(order + _STRUCT[p.count_dtype]) if p.is_list else None
        steps.append((counter, np.dtype(p.dtype).itemsize))
    scalar_offsets = [[] for _ in elem.properties]
    off, n_buf = pos, len(buf)
    for _ in range(elem.count):
        for j, (counter, size) in enumerate(steps):
            if counter is None:
                scalar_offsets[j].append(off)
                off += size
            else:
                if off + counter.size > n_buf:
                    raise _truncated(elem, path)
                n = counter.unpack_from(buf, off)[0]
                if n < 0:
                    raise _malformed(f"negative list length in PLY element {elem.name!r}", path)
                off += counter.size + n * size
        if off > n_buf:
            raise _truncated(elem, path)
    raw = np.frombuffer(buf, dtype=np.uint8)
    cols = {}
    for j, p in enumerate(elem.properties):
        if p.is_list:
            continue
        size = np.dtype(p.dtype).itemsize
        idx = np.asarray(scalar_offsets[j], dtype=np.int64)[:, None] + np.arange(size)
        cols[p.name] = raw[idx].copy().view(order + p.dtype).reshape(-1).astype(p.dtype)
    return cols, off


def _truncated(elem: PlyElement, path: Path) -> InputError:
    return InputError(
        f"PLY data ends inside element {elem.name!r} (header declares {elem.count} rows)",
        code=TRUNCATED,
        path=path,
    )


def _ascii_vertices(text: str, rows_before: int, vertex: PlyElement, path: Path) -> PlyVertexData:
    types = {p.name: p.dtype for p in vertex.properties}
    scalars = [p for p in vertex.properties if not p.is_list]
    if vertex.count == 0:
        empty = {p.name: np.zeros(0) for p in scalars}
        return PlyVertexData(empty, types, 0)
    n_lines = text.count("\n") + (not text.endswith("\n"))
    if n_lines < rows_before + vertex.count:
        raise InputError(
            f"PLY header declares {vertex.count} vertices but only {n_lines - rows_before} "
            "lines of vertex data follow",
            code=TRUNCATED,
            path=path,
        )
    if not vertex.has_lists:
        try:
            table = np.loadtxt(
                io.StringIO(text),
                dtype=np.float64,
                comments=None,
                skiprows=rows_before,
                max_rows=vertex.count,
                ndmin=2,
            )
        except ValueError as e:
            raise _malformed(f"bad ascii PLY vertex data: {e}", path) from e
        n_found = table.shape[0]
        if n_found and table.shape[1] != len(scalars):
            raise _malformed(
                f"ascii PLY vertex rows have {table.shape[1]} values, header declares "
                f"{len(scalars)} properties",
                path,
            )
    else:
        table, n_found = _ascii_rows_with_lists(text, rows_before, vertex, path)
    if n_found < vertex.count:
        raise InputError(
            f"PLY header declares {vertex.count} vertices but the file holds only {n_found}",
            code=TRUNCATED,
            path=path,
        )
    cols = {p.name: table[:, i] for i, p in enumerate(scalars)}
    return PlyVertexData(cols, types, vertex.count)


def _ascii_rows_with_lists(text, rows_before, vertex, path) -> tuple[np.ndarray, int]:
    if vertex.count > _MAX_SLOW_ROWS:
        raise InputError(
            f"ascii PLY vertex element with list properties has {vertex.count} rows; at most "
            f"{_MAX_SLOW_ROWS} are supported",
            code=UNSUPPORTED_FORMAT,
            path=path,
        )
    lines = text.split("\n", rows_before + vertex.count)[rows_before : rows_before + vertex.count]
    rows = []
    for line_no, line in enumerate(lines, start=1):
        tok, k, row = line.split(), 0, []
        try:
            for p in vertex.properties:
                if p.is_list:
                    k += 1 + int(tok[k])
                else:
                    row.append(float(tok[k]))
                    k += 1
        except (ValueError, IndexError) as e:
            raise _malformed(f"bad ascii PLY vertex row {line_no}: {line[:80]!r}", path) from e
        rows.append(row)
    n_scalars = sum(not p.is_list for p in vertex.properties)
    return np.asarray(rows, dtype=np.float64).reshape(-1, n_scalars), len(rows)
