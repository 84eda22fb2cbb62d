"""The bad-input corpus: files and request bodies that must be refused cleanly.

Each ``FileCase`` is written by ``write_files(dest)`` (nothing binary is committed); the tests
send every file to the API (expecting a 4xx problem+json with one of ``codes``) and, for point
clouds, to ``surfrecon reconstruct`` (expecting an error message and a non-zero exit).
Archive cases are sent as image sets (``/v1/uploads?kind=images``).
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT = {"malformed_file", "truncated", "unsupported_format", "too_few_points", "too_many_points", "non_finite",
         "degenerate"}
"""Codes any broken point cloud may fairly be refused with; most cases name the exact one."""


@dataclass(frozen=True)
class FileCase:
    name: str
    filename: str
    make: Callable[[], bytes]
    codes: frozenset[str]
    kind: str = "points"
    """'points': submitted as a job's point cloud; 'images': uploaded as an image-set archive."""


def _rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _sphere(n: int = 500) -> np.ndarray:
    p = _rng().normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def _xyz(points: np.ndarray) -> bytes:
    return "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in points).encode()


def _ply_header(n: str, fmt: str = "binary_little_endian 1.0", props: str = "xyz") -> bytes:
    lines = ["ply", f"format {fmt}", f"element vertex {n}"]
    lines += [f"property float {p}" for p in props]
    return ("\n".join(lines) + "\nend_header\n").encode()


def _binary_ply(points: np.ndarray) -> bytes:
    return _ply_header(str(len(points))) + points.astype("<f4").tobytes()


def _npy_lying_shape() -> bytes:
    """A valid .npy header claiming 10^8 x 3 float64 (2.4 GB), followed by 24 bytes."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000, 3), }"
    header = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 24


def _npy_object() -> bytes:
    """An object array: loading it would unpickle (run code); it must be refused, not loaded."""
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}] * 200, dtype=object), allow_pickle=True)
    return buf.getvalue()


def _with_nan(value: float) -> bytes:
    p = _sphere()
    p[17, 2] = value
    return _binary_ply(p)


def _zip(members: list[tuple[str, bytes]], *, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_bomb() -> bytes:
    """64 MiB of zeros deflated to ~64 KiB: a ratio of ~1000."""
    return _zip([("cameras_sphere.npz", b"\0" * (64 << 20))])


def _zip_lying_sizes() -> bytes:
    """The directory says a member holds 1 KiB; its deflated stream inflates to 32 MiB."""
    data = bytearray(_zip([("image/000.png", b"\0" * (32 << 20))]))
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        data[at + offset: at + offset + 4] = struct.pack("<I", 1024)
    return bytes(data)


def _zip_many_members() -> bytes:
    return _zip([(f"image/{i:05d}.png", b"") for i in range(6000)], compress=zipfile.ZIP_STORED)


def _zip_symlink() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("image/000.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("cameras_sphere.npz", b"x")
    return buf.getvalue()


def _zip_traversal(name: str) -> Callable[[], bytes]:
    return lambda: _zip([(name, b"owned"), ("cameras_sphere.npz", b"x")])


FILE_CASES: list[FileCase] = [
    FileCase("empty_xyz", "empty.xyz", lambda: b"", frozenset({"too_few_points"})),
    FileCase("empty_ply", "empty.ply", lambda: b"", frozenset({"too_few_points"})),
    FileCase("ply_header_cut", "cut.ply", lambda: b"ply\nformat ascii 1.0\nelement vertex 10\nprop",
             frozenset({"malformed_file", "truncated"})),
    FileCase("ply_no_end_header", "noend.ply", lambda: _ply_header("10").replace(b"end_header\n", b""),
             frozenset({"malformed_file", "truncated"})),
    FileCase("ply_lies_about_count", "lies.ply", lambda: _ply_header("5000") + _sphere(200).astype("<f4").tobytes(),
             frozenset({"truncated"})),
    FileCase("ply_ascii_short", "short.ply",
             lambda: _ply_header("5000", "ascii 1.0") + _xyz(_sphere(200)), frozenset({"truncated", "malformed_file"})),
    FileCase("ply_1e8_points", "huge.ply", lambda: _ply_header("100000000") + b"\0" * 1200,
             frozenset({"truncated", "too_many_points"})),
    FileCase("ply_1e18_points", "absurd.ply", lambda: _ply_header("1000000000000000000") + b"\0" * 1200,
             frozenset({"truncated", "too_many_points", "malformed_file"})),
    FileCase("ply_negative_count", "neg.ply", lambda: _ply_header("-5") + b"\0" * 60,
             frozenset({"malformed_file"})),
    FileCase("ply_unknown_format", "endian.ply", lambda: _ply_header("3", "binary_middle_endian 1.0") + b"\0" * 36,
             frozenset({"malformed_file", "unsupported_format"})),
    FileCase("ply_without_xyz", "rgb.ply", lambda: _ply_header("300", props="rgb") + b"\0" * 3600,
             frozenset({"malformed_file", "unsupported_format"})),
    FileCase("ply_garbage", "garbage.ply", lambda: _rng().bytes(50_000), frozenset({"malformed_file"})),
    FileCase("xyz_garbage", "garbage.xyz", lambda: _rng().bytes(50_000), frozenset({"malformed_file"})),
    FileCase("npy_garbage", "garbage.npy", lambda: _rng().bytes(50_000), frozenset({"malformed_file"})),
    FileCase("npz_garbage", "garbage.npz", lambda: _rng().bytes(50_000), frozenset({"malformed_file"})),
    FileCase("las_garbage", "garbage.las", lambda: b"LASF" + _rng().bytes(5_000), frozenset(INPUT)),
    FileCase("obj_garbage", "garbage.obj", lambda: _rng().bytes(50_000), frozenset(INPUT)),
    FileCase("npy_lying_shape", "lying.npy", _npy_lying_shape, frozenset({"truncated", "malformed_file",
                                                                         "too_many_points"})),
    FileCase("npy_object_pickle", "pickle.npy", _npy_object, frozenset({"malformed_file", "unsupported_format"})),
    FileCase("nan", "nan.ply", lambda: _with_nan(float("nan")), frozenset({"non_finite"})),
    FileCase("inf", "inf.ply", lambda: _with_nan(float("inf")), frozenset({"non_finite"})),
    FileCase("xyz_inf_text", "inf.xyz", lambda: _xyz(_sphere()) + b"1e999 0 0\n", frozenset({"non_finite"})),
    FileCase("one_point", "one.xyz", lambda: b"0.1 0.2 0.3\n", frozenset({"too_few_points"})),
    FileCase("identical_points", "same.xyz", lambda: b"0.5 0.5 0.5\n" * 1000, frozenset({"degenerate"})),
    FileCase("collinear_points", "line.xyz", lambda: _xyz(np.linspace(0, 1, 1000)[:, None] * [[1.0, 2.0, 3.0]]),
             frozenset({"degenerate"})),
    FileCase("unknown_suffix", "cloud.exe", lambda: _xyz(_sphere()), frozenset({"unsupported_format"})),
    FileCase("no_suffix", "cloud", lambda: _xyz(_sphere()), frozenset({"unsupported_format"})),
    FileCase("zip_as_points", "points.zip", lambda: _zip([("a.xyz", _xyz(_sphere()))]),
             frozenset({"unsupported_format", "malformed_file"})),
    # Image-set archives (zip handling: recon/io/archive.py).
    FileCase("zip_bomb", "bomb.zip", _zip_bomb, frozenset({"archive_too_large"}), kind="images"),
    FileCase("zip_lying_sizes", "lying.zip", _zip_lying_sizes,
             frozenset({"archive_too_large", "malformed_file", "unsafe_archive"}), kind="images"),
    FileCase("zip_many_members", "many.zip", _zip_many_members, frozenset({"archive_too_large"}), kind="images"),
    FileCase("zip_dotdot", "dotdot.zip", _zip_traversal("../../evil.txt"), frozenset({"unsafe_archive"}),
             kind="images"),
    FileCase("zip_nested_dotdot", "nested.zip", _zip_traversal("image/../../../evil.txt"),
             frozenset({"unsafe_archive"}), kind="images"),
    FileCase("zip_absolute", "abs.zip", _zip_traversal("/tmp/evil.txt"), frozenset({"unsafe_archive"}),
             kind="images"),
    FileCase("zip_backslash", "win.zip", _zip_traversal("..\\..\\evil.txt"),
             frozenset({"unsafe_archive", "malformed_file"}), kind="images"),
    FileCase("zip_symlink", "link.zip", _zip_symlink, frozenset({"unsafe_archive"}), kind="images"),
    FileCase("zip_garbage", "garbage.zip", lambda: b"PK\x03\x04" + _rng().bytes(5000),
             frozenset({"malformed_file"}), kind="images"),
    FileCase("zip_empty", "empty.zip", lambda: _zip([]),
             frozenset({"malformed_file", "not_found", "unsupported_format"}), kind="images"),
]


def write_files(dest: Path) -> dict[str, Path]:
    """Write every file case into ``dest``; returns {case name: path}."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for case in FILE_CASES:
        path = dest / case.name / case.filename  # one folder per case: file names may repeat
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(case.make())
        out[case.name] = path
    return out


@dataclass(frozen=True)
class RequestCase:
    """A raw request to ``path`` that must be refused with ``status`` (and one of ``codes``)."""

    name: str
    path: str
    content: bytes
    content_type: str
    status: int
    codes: frozenset[str]


ESCAPE = "/tmp/surfrecon-corpus-escaped.xyz"
"""Where an upload whose file name climbs out of the scratch folder would land if it could."""


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _multipart(spec: bytes | None, filename: str = "a.xyz", data: bytes = b"0 0 0\n") -> tuple[bytes, str]:
    b = "corpusboundary"
    head = b"" if spec is None else (
        f"--{b}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n".encode() + spec + b"\r\n")
    body = (head + f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode() + data + f"\r\n--{b}--\r\n".encode())
    return body, f"multipart/form-data; boundary={b}"


def request_cases() -> list[RequestCase]:
    huge_spec, huge_ct = _multipart(b'{"method": "poisson", "pad": "' + b"x" * (200 << 10) + b'"}')
    deep_spec, deep_ct = _multipart(_nested(10_000))  # 60 KB: under the 64 KiB field cap
    bad_utf8, bad_utf8_ct = _multipart(b'{"method": "\xff\xfe"}')
    traversal, traversal_ct = _multipart(None, filename=f"../../../../../../..{ESCAPE}", data=_xyz(_sphere()))
    many_jobs = json.dumps({"jobs": [{"upload_id": "u" * 32, "spec": {}}] * 10_000}).encode()  # 480 KB
    json_ct = "application/json"
    validation = frozenset({"validation_error", "invalid_spec"})
    return [
        RequestCase("json_deeply_nested", "/v1/jobs", _nested(100_000), json_ct, 422, validation),
        RequestCase("json_deep_array", "/v1/batches", b"[" * 400_000 + b"]" * 400_000, json_ct, 422, validation),
        RequestCase("json_deep_over_cap", "/v1/batches", b"[" * (1 << 20) + b"]" * (1 << 20), json_ct, 413,
                    frozenset({"payload_too_large"})),
        RequestCase("json_huge_body", "/v1/jobs", b'{"spec": {}, "upload_id": "' + b"x" * (3 << 20) + b'"}', json_ct,
                    413, frozenset({"payload_too_large"})),
        RequestCase("json_many_batch_jobs", "/v1/batches", many_jobs, json_ct, 422,
                    frozenset({"validation_error", "too_many_jobs", "batch_too_large"})),
        RequestCase("json_not_utf8", "/v1/jobs", b'{"spec": "\xff\xfe"}', json_ct, 422, validation),
        RequestCase("json_nan_literal", "/v1/jobs", b'{"spec": {"resolution": NaN}, "upload_id": "x"}', json_ct, 422,
                    validation),
        RequestCase("json_top_level_array", "/v1/jobs", b"[1, 2, 3]", json_ct, 422, validation),
        RequestCase("multipart_huge_spec", "/v1/jobs", huge_spec, huge_ct, 413, frozenset({"payload_too_large"})),
        RequestCase("multipart_deep_spec", "/v1/jobs", deep_spec, deep_ct, 422, validation),
        RequestCase("multipart_spec_not_utf8", "/v1/jobs", bad_utf8, bad_utf8_ct, 422, validation),
        RequestCase("multipart_no_boundary", "/v1/jobs", b"--x\r\n\r\n", "multipart/form-data", 400,
                    frozenset({"bad_request"})),
        RequestCase("multipart_path_filename", "/v1/uploads", traversal, traversal_ct, 201, frozenset()),
        RequestCase("xml_body", "/v1/jobs", b"<job/>", "application/xml", 415, frozenset({"unsupported_media_type"})),
        RequestCase("form_urlencoded", "/v1/jobs", b"spec=%7B%7D", "application/x-www-form-urlencoded", 415,
                    frozenset({"unsupported_media_type"})),
        RequestCase("no_content_type", "/v1/uploads", b"0 0 0\n", "", 415, frozenset({"unsupported_media_type"})),
        RequestCase("image_as_upload", "/v1/uploads", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png", 415,
                    frozenset({"unsupported_media_type"})),
    ]
