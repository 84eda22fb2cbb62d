"""Submitting jobs and batches: parse the request, validate spec and files, store, enqueue.

Two body shapes reach each endpoint: ``multipart/form-data`` carrying the files (part
``file``, repeated for a batch, optional ``gt_file``) and the JSON spec (part ``spec``), or
``application/json`` referring to earlier uploads (``JobCreate`` / ``BatchCreate``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import anyio
from fastapi import Request
from pydantic import ValidationError

from recon.methods import DEFAULT_METHOD, get_method
from recon.spec import JobSpec
from service.api.schemas import BatchCreate, JobCreate
from service.auth import Principal
from service.context import ServiceContext
from service.jobs.models import Batch, Job, Upload
from service.jobs.store import NewJob
from service.problems import Problem, ProblemCode, validation_problem
from service.uploads import (
    FilePart,
    Form,
    read_json_body,
    read_multipart,
    request_hash,
    store_upload,
    upload_ref,
    validate_file,
)


@dataclass
class Submitted:
    jobs: list[Job]
    batch: Batch | None
    created: bool


def parse_spec(raw: str) -> JobSpec:
    """The JobSpec in a form field; 422 invalid_spec with field errors when it is not one."""
    try:
        return JobSpec.model_validate_json(raw or "{}")
    except ValidationError as e:
        raise validation_problem([{**err, "loc": ("spec", *err["loc"])} for err in e.errors()], code=ProblemCode.INVALID_SPEC) from e


def _parse_body(model, raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors()
        spec_error = any("spec" in [str(x) for x in err["loc"]] for err in errors)
        raise validation_problem(errors, code=ProblemCode.INVALID_SPEC if spec_error else ProblemCode.VALIDATION_ERROR) from e


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_form(ctx: ServiceContext, request: Request, *, max_files: int) -> Form:
    s = ctx.settings
    form = await read_multipart(request, scratch=s.scratch_dir, max_bytes=s.max_upload_bytes,
                                max_files=max_files + 1)
    try:
        form.fold_file_fields({"spec"})
    except BaseException:
        form.cleanup()
        raise
    return form


async def _validated(ctx: ServiceContext, part: FilePart, kind: str) -> None:
    s = ctx.settings
    await validate_file(part, kind=kind, full=s.validate_inputs, max_points=s.max_input_points,
                        limiter=ctx.validation_limiter, scratch=s.scratch_dir,
                        max_archive_bytes=s.max_archive_bytes, max_archive_members=s.max_archive_members)


def input_kind(spec: dict) -> str:
    """The upload kind a (validated) job spec's method reads, from the method table: 'images' (an
    image-set archive) or 'points' (a point cloud)."""
    return get_method(spec.get("method", DEFAULT_METHOD)).input_kind


_KIND_NAMES = {"points": "a point cloud", "images": "an image set", "mesh": "a mesh"}


def _reject_unknown(form: Form, *, fields: set[str], files: set[str]) -> None:
    extra = sorted(set(form.fields) - fields) + sorted({f.field for f in form.files} - files)
    if extra:
        raise Problem(422, ProblemCode.VALIDATION_ERROR, f"unexpected form parts: {', '.join(extra)}; "
                      f"expected {', '.join(sorted(fields | files))}")


def _enqueue(ctx: ServiceContext, principal: Principal, jobs: list[NewJob], *, key: str | None, digest: str,
             as_batch: bool) -> Submitted:
    s = ctx.settings
    rows, batch, created = ctx.store.create_jobs(
        owner=principal.owner, jobs=jobs, max_attempts=s.max_attempts, max_queued=s.max_queued_per_key,
        idempotency_key=key, request_hash=digest, as_batch=as_batch)
    if created:
        ctx.wake_dispatcher()
    return Submitted(rows, batch, created)


def _replay(ctx: ServiceContext, principal: Principal, *, key: str | None, digest: str,
            as_batch: bool) -> Submitted | None:
    """The earlier answer for a repeated idempotency key, checked before any file is stored."""
    if key is None:
        return None
    with ctx.store.reading() as sess:
        prior = ctx.store.find_idempotent(sess, Batch if as_batch else Job, owner=principal.owner, key=key,
                                          request_hash=digest)
    if prior is None:
        return None
    if as_batch:
        batch, jobs = ctx.store.get_batch(owner=principal.owner, batch_id=prior.id)
        return Submitted(jobs, batch, False)
    return Submitted([prior], None, False)


def _check_quota(ctx: ServiceContext, principal: Principal, adding: int) -> None:
    ctx.store.check_quota(owner=principal.owner, adding=adding, max_queued=ctx.settings.max_queued_per_key)


def _resolve(ctx: ServiceContext, principal: Principal, body: JobCreate) -> tuple[NewJob, str]:
    up = ctx.store.get_upload(owner=principal.owner, upload_id=body.upload_id)
    want = input_kind(body.spec.model_dump(mode="json"))
    if up.kind != want:
        raise Problem(422, ProblemCode.VALIDATION_ERROR, f"upload {up.id!r} is {_KIND_NAMES.get(up.kind, up.kind)}, method "
                      f"{body.spec.method!r} expects {_KIND_NAMES[want]}")
    gt: Upload | None = None
    if body.gt_upload_id is not None:
        gt = ctx.store.get_upload(owner=principal.owner, upload_id=body.gt_upload_id)
        if gt.kind != "mesh":
            raise Problem(422, ProblemCode.VALIDATION_ERROR, f"upload {gt.id!r} is a {gt.kind}, expected a mesh")
    spec = body.spec.model_dump(mode="json")
    nj = NewJob(spec=spec, input=upload_ref(up), ground_truth=upload_ref(gt) if gt else None)
    return nj, request_hash(spec, up.sha256, gt.sha256 if gt else None)


async def submit_job(ctx: ServiceContext, request: Request, *, principal: Principal, key: str | None) -> Submitted:
    """POST /v1/jobs."""
    media = _media_type(request)
    if media == "application/json":
        body = _parse_body(JobCreate, await read_json_body(request))
        nj, digest = await anyio.to_thread.run_sync(_resolve, ctx, principal, body)
        return await anyio.to_thread.run_sync(
            lambda: _replay(ctx, principal, key=key, digest=digest, as_batch=False)
            or _enqueue(ctx, principal, [nj], key=key, digest=digest, as_batch=False))
    if media != "multipart/form-data":
        raise Problem(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, f"expected multipart/form-data or application/json, got {media!r}")
    form = await _read_form(ctx, request, max_files=2)
    try:
        _reject_unknown(form, fields={"spec"}, files={"file", "gt_file"})
        spec = parse_spec(form.fields.get("spec", "{}")).model_dump(mode="json")
        inputs = [f for f in form.files if f.field == "file"]
        gts = [f for f in form.files if f.field == "gt_file"]
        if len(inputs) != 1 or len(gts) > 1:
            raise Problem(422, ProblemCode.MISSING_FILE, "expected exactly one 'file' part (and at most one 'gt_file')")
        digest = request_hash(spec, inputs[0].sha256, gts[0].sha256 if gts else None)
        prior = await anyio.to_thread.run_sync(lambda: _replay(ctx, principal, key=key, digest=digest, as_batch=False))
        if prior is not None:
            return prior
        await anyio.to_thread.run_sync(_check_quota, ctx, principal, 1)
        kind = input_kind(spec)
        await _validated(ctx, inputs[0], kind)
        if gts:
            await _validated(ctx, gts[0], "mesh")

        def store_and_enqueue() -> Submitted:
            up = store_upload(ctx.store, ctx.artifacts, inputs[0], owner=principal.owner, kind=kind)
            gt = store_upload(ctx.store, ctx.artifacts, gts[0], owner=principal.owner, kind="mesh") if gts else None
            nj = NewJob(spec=spec, input=upload_ref(up), ground_truth=upload_ref(gt) if gt else None)
            return _enqueue(ctx, principal, [nj], key=key, digest=digest, as_batch=False)

        return await anyio.to_thread.run_sync(store_and_enqueue)
    finally:
        form.cleanup()


async def submit_batch(ctx: ServiceContext, request: Request, *, principal: Principal,
                       key: str | None) -> Submitted:
    """POST /v1/batches: one spec for many files (multipart), or a list of JobCreate (JSON)."""
    limit = ctx.settings.max_batch_jobs
    media = _media_type(request)
    if media == "application/json":
        body = _parse_body(BatchCreate, await read_json_body(request))
        if len(body.jobs) > limit:
            raise Problem(422, ProblemCode.VALIDATION_ERROR, f"jobs: at most {limit} jobs per batch, got {len(body.jobs)}")

        def resolve_all() -> Submitted:
            resolved = [_resolve(ctx, principal, j) for j in body.jobs]
            digest = _batch_hash([d for _, d in resolved])
            return (_replay(ctx, principal, key=key, digest=digest, as_batch=True)
                    or _enqueue(ctx, principal, [nj for nj, _ in resolved], key=key, digest=digest, as_batch=True))

        return await anyio.to_thread.run_sync(resolve_all)
    if media != "multipart/form-data":
        raise Problem(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, f"expected multipart/form-data or application/json, got {media!r}")
    form = await _read_form(ctx, request, max_files=limit)
    try:
        _reject_unknown(form, fields={"spec"}, files={"file"})
        spec = parse_spec(form.fields.get("spec", "{}")).model_dump(mode="json")
        if not form.files:
            raise Problem(422, ProblemCode.MISSING_FILE, "expected one or more 'file' parts")
        if len(form.files) > limit:
            raise Problem(422, ProblemCode.VALIDATION_ERROR, f"file: at most {limit} files per batch, got {len(form.files)}")
        digest = _batch_hash([request_hash(spec, f.sha256, None) for f in form.files])
        prior = await anyio.to_thread.run_sync(lambda: _replay(ctx, principal, key=key, digest=digest, as_batch=True))
        if prior is not None:
            return prior
        await anyio.to_thread.run_sync(_check_quota, ctx, principal, len(form.files))
        kind = input_kind(spec)
        for f in form.files:
            await _validated(ctx, f, kind)

        def store_and_enqueue() -> Submitted:
            ups = [store_upload(ctx.store, ctx.artifacts, f, owner=principal.owner, kind=kind) for f in form.files]
            jobs = [NewJob(spec=spec, input=upload_ref(u)) for u in ups]
            return _enqueue(ctx, principal, jobs, key=key, digest=digest, as_batch=True)

        return await anyio.to_thread.run_sync(store_and_enqueue)
    finally:
        form.cleanup()


def _batch_hash(digests: list[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


async def receive_upload(ctx: ServiceContext, request: Request, *, principal: Principal, kind: str) -> Upload:
    """POST /v1/uploads: one ``file`` part, validated as a point cloud, a mesh or an image set."""
    if _media_type(request) != "multipart/form-data":
        raise Problem(415, ProblemCode.UNSUPPORTED_MEDIA_TYPE, "expected multipart/form-data with a 'file' part")
    form = await _read_form(ctx, request, max_files=1)
    try:
        _reject_unknown(form, fields=set(), files={"file"})
        if len(form.files) != 1:
            raise Problem(422, ProblemCode.MISSING_FILE, "expected one 'file' part")
        await _validated(ctx, form.files[0], kind)
        return await anyio.to_thread.run_sync(
            lambda: store_upload(ctx.store, ctx.artifacts, form.files[0], owner=principal.owner, kind=kind))
    finally:
        form.cleanup()
