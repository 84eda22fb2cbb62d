"""Receiving input files: the request body streamed to scratch files, validated, then stored.

Bodies are never held in memory: multipart file parts go to scratch files chunk by chunk,
and the byte count is checked as it grows, so a body over ``max_upload_bytes`` is refused
(413) as soon as it crosses the cap (at once when ``Content-Length`` already says so).

Input files are validated at submission: a point cloud is loaded with
``recon.io.load_point_cloud`` in a worker thread, so a malformed file is a 422 with the
loader's code right away instead of a job that fails later (``validate_inputs=false`` keeps
only the suffix check, for very large inputs). An image set (kind ``images``, a ``.zip``) is
extracted with ``recon.io.archive.safe_extract`` into scratch space under the archive caps and
checked with ``recon.io.multiview.probe_multiview`` (cameras, counts, image headers; pixels are
decoded only by the worker).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from recon.io.errors import InputErrorCode
from service.jobs.models import Upload, utcnow
from service.jobs.store import JobStore, new_id
from service.problems import Problem, ProblemCode
from service.storage import ArtifactStore

MAX_FIELD_BYTES = 64 << 10
"""Largest non-file form field (the JSON spec)."""
MAX_JSON_BYTES = 1 << 20
"""Largest JSON request body."""
FORM_OVERHEAD = 1 << 20
"""Allowance on top of the file cap for multipart boundaries, headers and the spec field."""
_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")
MESH_SUFFIXES = (".ply", ".obj", ".glb", ".stl", ".off")
IMAGE_SET_SUFFIXES = (".zip",)
"""Image sets arrive as one archive (NeuS folder, transforms.json, COLMAP project or .npz)."""


@dataclass
class FilePart:
    """An uploaded file waiting in scratch space."""

    field: str
    filename: str
    path: Path
    size: int = 0
    sha256: str = ""

    @property
    def suffix(self) -> str:
        return Path(self.filename).suffix.lower()


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)

    def cleanup(self) -> None:
        for f in self.files:
            f.path.unlink(missing_ok=True)

    def fold_file_fields(self, names: set[str]) -> None:
        """Treat file parts called one of ``names`` as text fields (``curl -F spec=@spec.json``)."""
        for f in [f for f in self.files if f.field in names]:
            if f.size > MAX_FIELD_BYTES:
                raise Problem(413, ProblemCode.PAYLOAD_TOO_LARGE, f"form field {f.field!r} exceeds {MAX_FIELD_BYTES} bytes")
            self.fields[f.field] = f.path.read_text("utf-8", errors="replace")
            f.path.unlink(missing_ok=True)
            self.files.remove(f)


def too_large(limit: int) -> Problem:
    return Problem(413, ProblemCode.PAYLOAD_TOO_LARGE, f"the request body exceeds the limit of {limit} bytes")


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        raise Problem(400, ProblemCode.BAD_REQUEST, "Content-Length is not a number") from None


async def read_json_body(request: Request, *, limit: int = MAX_JSON_BYTES) -> bytes:
    """The whole body of a JSON request, refused past ``limit`` bytes."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks, n = [], 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise Problem(400, ProblemCode.BAD_REQUEST, "the client went away before sending the whole body") from None
    return b"".join(chunks)


async def read_multipart(request: Request, *, scratch: Path, max_bytes: int, max_files: int) -> Form:
    """Stream a multipart/form-data body: file parts to scratch files, other fields in memory."""
    limit = max_bytes + FORM_OVERHEAD
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(max_bytes)
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise Problem(400, ProblemCode.BAD_REQUEST, "multipart body without a boundary")
    scratch.mkdir(parents=True, exist_ok=True)
    form, state = Form(), _PartState()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state.header_name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.header_value += data[start:end]

    def on_header_end() -> None:
        state.headers[state.header_name.decode("latin-1").lower()] = state.header_value
        state.header_name, state.header_value = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state.headers.get("content-disposition", b""))
        state.name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        if filename is not None:
            if len(form.files) >= max_files:
                raise Problem(422, ProblemCode.VALIDATION_ERROR, f"at most {max_files} files per request")
            part = FilePart(state.name, Path(filename.decode("utf-8", "replace")).name, Path())
            # The loaders choose by suffix, so the scratch file keeps the (sanitised) original one.
            suffix = part.suffix if _SUFFIX.fullmatch(part.suffix) else ""
            fd, tmp = tempfile.mkstemp(dir=scratch, prefix="upload-", suffix=suffix)
            part.path = Path(tmp)
            form.files.append(part)
            # Open across the parser's callbacks: closed by on_part_end or the form's cleanup.
            state.file, state.part, state.hash = open(fd, "wb"), part, hashlib.sha256()  # noqa: SIM115

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state.file is not None:
            state.file.write(chunk)
            state.hash.update(chunk)
            state.part.size += len(chunk)
            if state.part.size > max_bytes:
                raise too_large(max_bytes)
        else:
            state.value += chunk
            if len(state.value) > MAX_FIELD_BYTES:
                raise Problem(413, ProblemCode.PAYLOAD_TOO_LARGE, f"form field {state.name!r} exceeds {MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        if state.file is not None:
            state.file.close()
            state.part.sha256 = state.hash.hexdigest()
        else:
            form.fields[state.name] = state.value.decode("utf-8", "replace")
        state.reset()

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end})
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        form.cleanup()
        raise Problem(400, ProblemCode.BAD_REQUEST, f"malformed multipart body: {e}") from e
    except ClientDisconnect:
        form.cleanup()
        raise Problem(400, ProblemCode.BAD_REQUEST, "the client went away before sending the whole body") from None
    except BaseException:
        form.cleanup()
        raise
    finally:
        if state.file is not None:
            state.file.close()
    return form


@dataclass
class _PartState:
    header_name: bytes = b""
    header_value: bytes = b""
    headers: dict = field(default_factory=dict)
    name: str = ""
    value: bytes = b""
    file: object = None
    part: FilePart | None = None
    hash: object = None

    def reset(self) -> None:
        self.__init__()


# ---- validation ------------------------------------------------------------------------------

def _validate_points(path: Path, name: str, max_points: int) -> None:
    from recon.io import InputError, load_point_cloud

    try:
        load_point_cloud(path, max_points=max_points)
    except InputError as e:  # named after the client's file, not the scratch file
        raise Problem(422, e.code, f"{name}: {e.detail}") from e
    except (MemoryError, OSError, ValueError) as e:
        raise Problem(422, InputErrorCode.MALFORMED_FILE, f"{name}: could not read the file ({type(e).__name__})") from e


def _validate_mesh(path: Path, name: str) -> None:
    try:
        from meshing.export import load_mesh
    except ImportError:  # mesh loading not available here: the worker will find out
        return
    try:
        mesh = load_mesh(path)
    except (ValueError, OSError, KeyError, IndexError, MemoryError) as e:
        raise Problem(422, InputErrorCode.MALFORMED_FILE, f"{name}: could not read the mesh: {e}") from e
    if getattr(mesh, "n_faces", 1) == 0:
        raise Problem(422, InputErrorCode.MALFORMED_FILE, f"{name}: the ground-truth mesh has no faces")


def _validate_images(path: Path, name: str, scratch: Path, max_bytes: int, max_members: int) -> None:
    from recon.io import InputError
    from recon.io.archive import detail_within, safe_extract
    from recon.io.multiview import find_dataset_root, probe_multiview

    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="unzip-") as tmp:
        try:
            safe_extract(path, tmp, max_members=max_members, max_total_bytes=max_bytes)
            probe_multiview(find_dataset_root(Path(tmp)))
        except InputError as e:  # named after the client's file and the member, not scratch paths
            raise Problem(422, e.code, f"{name}: {detail_within(e, Path(tmp))}") from e
        except (MemoryError, OSError, ValueError) as e:
            raise Problem(422, InputErrorCode.MALFORMED_FILE, f"{name}: could not read the image set ({type(e).__name__})") from e


def _image_methods() -> tuple[str, str]:
    """("method 'neus'", "s"): the methods that take image sets, for messages, and the verb's ending."""
    from recon.methods import method_names, quoted

    names = method_names("images")
    return quoted(names), "s" if len(names) == 1 else ""


async def validate_file(part: FilePart, *, kind: str, full: bool, max_points: int,
                        limiter: anyio.CapacityLimiter, scratch: Path | None = None,
                        max_archive_bytes: int = 2 << 30, max_archive_members: int = 4096) -> None:
    """422 problem unless ``part`` is a usable point cloud (kind 'points'), mesh ('mesh') or
    image-set archive ('images')."""
    image_methods, verb_s = _image_methods()
    if kind == "images":
        if part.suffix not in IMAGE_SET_SUFFIXES:
            raise Problem(422, InputErrorCode.UNSUPPORTED_FORMAT,
                          f"{part.filename}: {image_methods} take{verb_s} posed images as a .zip archive, "
                          f"got {part.suffix or 'no suffix'!r}")
        if full:
            await anyio.to_thread.run_sync(_validate_images, part.path, part.filename,
                                           scratch or part.path.parent, max_archive_bytes, max_archive_members,
                                           limiter=limiter)
        return
    if kind == "mesh":
        if part.suffix not in MESH_SUFFIXES:
            raise Problem(422, InputErrorCode.UNSUPPORTED_FORMAT,
                          f"{part.filename}: expected a mesh ({', '.join(MESH_SUFFIXES)}), got {part.suffix or 'no suffix'!r}")
        if full:
            await anyio.to_thread.run_sync(_validate_mesh, part.path, part.filename, limiter=limiter)
        return
    from recon.io import LOADERS

    if part.suffix in IMAGE_SET_SUFFIXES:
        raise Problem(422, InputErrorCode.UNSUPPORTED_FORMAT,
                      f"{part.filename}: a {part.suffix} archive is an image set, which only {image_methods} "
                      f"reconstruct{verb_s}; point-cloud methods take one of {', '.join(sorted(LOADERS))}")
    if part.suffix not in LOADERS:
        raise Problem(422, InputErrorCode.UNSUPPORTED_FORMAT,
                      f"{part.filename}: expected one of {', '.join(sorted(LOADERS))}, got {part.suffix or 'no suffix'!r}")
    if full:
        await anyio.to_thread.run_sync(_validate_points, part.path, part.filename, max_points, limiter=limiter)


def store_upload(store: JobStore, artifacts: ArtifactStore, part: FilePart, *, owner: str, kind: str) -> Upload:
    """Move a validated scratch file into the artifact store and record it."""
    upload_id = new_id()
    key = f"uploads/{upload_id}/{'ground_truth' if kind == 'mesh' else 'input'}{part.suffix}"
    artifacts.put_file(part.path, key, move=True)
    return store.add_upload(Upload(id=upload_id, owner=owner, name=part.filename[:255], key=key, kind=kind,
                                   size=part.size, sha256=part.sha256, created_at=utcnow()))


def upload_ref(up: Upload) -> dict:
    """How a job row refers to its input."""
    return {"upload_id": up.id, "name": up.name, "key": up.key, "size": up.size, "sha256": up.sha256}


def request_hash(spec: dict, input_sha: str, gt_sha: str | None) -> str:
    blob = json.dumps({"spec": spec, "input": input_sha, "gt": gt_sha}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
