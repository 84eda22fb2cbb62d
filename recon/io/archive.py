"""Safe extraction of user-supplied zip archives (image sets arrive as zips).

A zip from the outside can try to write outside the extraction folder (absolute names,
``..``, symlinks), create devices, overwrite one member by another of the same name, or
expand to far more than it weighs (zip bombs, and headers that under-declare sizes).
``safe_extract`` checks every member before writing anything, then counts the bytes it
actually writes, so a lying header is caught too. Problems are ``InputError`` with code
``unsafe_archive`` (names and types) or ``archive_too_large`` (counts, sizes, ratios).
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from recon.io.errors import (
    ARCHIVE_TOO_LARGE,
    MALFORMED_FILE,
    UNSAFE_ARCHIVE,
    UNSUPPORTED_FORMAT,
    InputError,
)

CHUNK = 1 << 20
RATIO_MIN_BYTES = 1 << 20
"""Members smaller than this (uncompressed) are exempt from the ratio check: they cannot hurt."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what one archive may expand to."""

    max_members: int = 4096
    """Most entries (files and folders) in the archive."""
    max_total_bytes: int = 2 << 30
    """Most uncompressed bytes, declared and actually written."""
    max_ratio: float = 200.0
    """Highest uncompressed/compressed size ratio of a member of 1 MiB or more, and of the whole."""


def _declared_entries(path: Path) -> int | None:
    """Entry count from the end-of-central-directory record, read before ``zipfile`` parses it all."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
        i = tail.rfind(b"PK\x05\x06")
        if i < 0 or len(tail) - i < 22:
            return None
        total = struct.unpack_from("<H", tail, i + 10)[0]
        if total != 0xFFFF or i < 20 or tail[i - 20 : i - 16] != b"PK\x06\x07":
            return total
        offset = struct.unpack_from("<Q", tail, i - 20 + 8)[0]  # zip64 end record
        f.seek(offset)
        rec = f.read(56)
        if len(rec) < 56 or rec[:4] != b"PK\x06\x06":
            return None
        return struct.unpack_from("<Q", rec, 32)[0]


def _member_path(name: str, *, path: Path) -> PurePosixPath:
    """The relative path a member name stands for; ``InputError`` for anything escaping."""
    if "\x00" in name:
        raise InputError(f"member name {name!r} contains a NUL byte", code=UNSAFE_ARCHIVE, path=path)
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise InputError(f"member {name!r} has an absolute path", code=UNSAFE_ARCHIVE, path=path)
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"member {name!r} points outside the archive's folder (..)", code=UNSAFE_ARCHIVE, path=path)
    if not parts:
        raise InputError(f"member {name!r} has an empty name", code=UNSAFE_ARCHIVE, path=path)
    return PurePosixPath(*parts)


def _check_members(zf: zipfile.ZipFile, limits: ArchiveLimits, *, path: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise InputError(f"{len(infos)} members, more than the limit of {limits.max_members}",
                         code=ARCHIVE_TOO_LARGE, path=path)
    seen: dict[str, str] = {}
    total = compressed = 0
    out = []
    for info in infos:
        rel = _member_path(info.filename, path=path)
        mode = (info.external_attr >> 16) & 0xFFFF
        kind = stat.S_IFMT(mode)
        if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):  # 3: Unix
            what = "a symbolic link" if stat.S_ISLNK(mode) else "a device, pipe or socket"
            raise InputError(f"member {info.filename!r} is {what}", code=UNSAFE_ARCHIVE, path=path)
        if info.flag_bits & 0x1:
            raise InputError(f"member {info.filename!r} is encrypted", code=UNSUPPORTED_FORMAT, path=path)
        key = str(rel).casefold()  # also catches names that collide on case-insensitive disks
        if key in seen:
            raise InputError(f"member {info.filename!r} repeats {seen[key]!r}", code=UNSAFE_ARCHIVE, path=path)
        seen[key] = info.filename
        total += info.file_size
        compressed += info.compress_size
        if info.file_size >= RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise InputError(f"member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                             f"(limit {limits.max_ratio:g}): refused as a likely zip bomb", code=ARCHIVE_TOO_LARGE,
                             path=path)
        out.append((info, rel))
    if total > limits.max_total_bytes:
        raise InputError(f"the archive expands to {total} bytes, more than the limit of {limits.max_total_bytes}",
                         code=ARCHIVE_TOO_LARGE, path=path)
    if total >= RATIO_MIN_BYTES and total > limits.max_ratio * max(compressed, 1):
        raise InputError(f"the archive expands {total / max(compressed, 1):.0f}-fold (limit {limits.max_ratio:g}): "
                         "refused as a likely zip bomb", code=ARCHIVE_TOO_LARGE, path=path)
    return out


def safe_extract(zip_path: str | Path, dest: str | Path, *, max_members: int = ArchiveLimits.max_members,
                 max_total_bytes: int = ArchiveLimits.max_total_bytes,
                 max_ratio: float = ArchiveLimits.max_ratio) -> list[Path]:
    """Extract ``zip_path`` into the existing folder ``dest``; returns the files written.

    Every member is checked before anything is written (see the module docstring), and the
    bytes written are counted against each member's declared size and the total cap. On any
    problem the partial extraction is left in ``dest`` for the caller to remove (it is meant
    to be a fresh temporary folder) and ``InputError`` is raised.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    limits = ArchiveLimits(max_members, max_total_bytes, max_ratio)
    try:
        declared = _declared_entries(zip_path)
    except OSError as e:
        raise InputError(f"cannot read the archive: {e}", code=MALFORMED_FILE, path=zip_path) from e
    if declared is not None and declared > max_members:
        raise InputError(f"{declared} members, more than the limit of {max_members}", code=ARCHIVE_TOO_LARGE,
                         path=zip_path)
    root = dest.resolve()
    written: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = _check_members(zf, limits, path=zip_path)
            total = 0
            for info, rel in members:
                target = root.joinpath(*rel.parts)
                if not target.resolve().is_relative_to(root):  # belt and braces
                    raise InputError(f"member {info.filename!r} escapes the folder", code=UNSAFE_ARCHIVE,
                                     path=zip_path)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                n = 0
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                with zf.open(info) as src, os.fdopen(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        n += len(chunk)
                        total += len(chunk)
                        if n > info.file_size:
                            raise InputError(f"member {info.filename!r} holds more than the {info.file_size} "
                                             "bytes its header declares", code=ARCHIVE_TOO_LARGE, path=zip_path)
                        if total > max_total_bytes:
                            raise InputError(f"the archive expands past the limit of {max_total_bytes} bytes",
                                             code=ARCHIVE_TOO_LARGE, path=zip_path)
                        out.write(chunk)
                written.append(target)
    except zipfile.BadZipFile as e:
        raise InputError(f"not a valid zip archive: {e}", code=MALFORMED_FILE, path=zip_path) from e
    except FileExistsError as e:
        raise InputError(f"member {e.filename!r} is written twice", code=UNSAFE_ARCHIVE, path=zip_path) from e
    except (OSError, EOFError, NotImplementedError, RuntimeError) as e:
        # NotImplementedError: unknown compression method; RuntimeError: encryption.
        raise InputError(f"cannot extract the archive: {e}", code=MALFORMED_FILE, path=zip_path) from e
    return written


def detail_within(err: InputError, folder: Path) -> str:
    """The error's detail prefixed by the offending file's path relative to ``folder``
    (the extraction folder), so that messages name the archive member, not a temporary path."""
    if err.path is None:
        return err.detail
    try:
        rel = Path(err.path).resolve().relative_to(folder.resolve())
    except ValueError:
        return err.detail
    return f"{rel}: {err.detail}" if str(rel) != "." else err.detail
