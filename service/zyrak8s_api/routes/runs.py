"""Start runs, read them, cancel them, download what they wrote."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import tempfile
import zipfile
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import iterate_in_threadpool

from zyrak8s_core import callbacks, storage as storages
from zyrak8s_core.catalogue import ArgsError, Invocation, check_pipeline
from zyrak8s_core.runs import RunRecord, Status, new_run_id, now
from zyrak8s_api import uploads
from zyrak8s_api.backends.base import Busy, NotFound
from zyrak8s_api.deps import OwnerDep, Services, ServicesDep
from zyrak8s_api.joblogs import full_logs
from zyrak8s_api.schemas import ErrorPublic, JobPublic, RunAccepted, RunCreate, RunSyncPublic

router = APIRouter(tags=["runs"])

MAX_PIPELINE_BYTES = 1024 * 1024

_ERRORS = {422: {"model": ErrorPublic, "description": "unknown stage/command/option or an invalid value"}}


def _invocation(services: Services, body: RunCreate) -> Invocation:
    def resolve(file_id: str) -> str:
        try:
            return uploads.resolve_file(services.storage, file_id)
        except LookupError:
            raise ArgsError(f"no upload with file_id {file_id}", field="args") from None

    invocation = services.catalogue.invocation(body.stage, body.command, args=body.args, argv=body.argv, resolve_file=resolve)
    if invocation.stage == "run":  # the pipeline file's stages become arguments too: check them before running
        for ref in invocation.inputs:
            key = storages.upload_key(ref.file_id, ref.name)
            if sum(o.size for o in services.storage.list(key)) > MAX_PIPELINE_BYTES:
                raise ArgsError(f"args.config: a pipeline file may be at most {MAX_PIPELINE_BYTES} bytes", field="args.config")
            check_pipeline(services.storage.get_bytes(key), "args.config")
    return invocation


async def _get(services: Services, job_id: str) -> RunRecord:
    try:
        return await services.backend.get(job_id)
    except NotFound:
        raise HTTPException(404, f"no job {job_id!r}") from None


@router.post(
    "/cli/run",
    summary="Run a zyra command (sync: wait for the result; async: 202 with a job_id)",
    responses={**_ERRORS, 202: {"model": RunAccepted}, 503: {"description": "queue full"}},
    response_model=RunSyncPublic,
)
async def run(
    body: RunCreate,
    services: ServicesDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    settings = services.settings
    try:
        invocation = await asyncio.to_thread(_invocation, services, body)
    except ArgsError as exc:
        return JSONResponse(ErrorPublic(detail=str(exc), field=exc.field, allowed=exc.allowed).model_dump(), 422)
    timeout = body.timeout or settings.default_timeout_seconds
    if timeout > settings.max_timeout_seconds:
        return JSONResponse(
            ErrorPublic(detail=f"timeout may be at most {settings.max_timeout_seconds} s", field="timeout").model_dump(), 422
        )
    if body.callback_url is not None:
        try:
            callbacks.check_url(body.callback_url)
        except ValueError as exc:
            return JSONResponse(ErrorPublic(detail=str(exc), field="callback_url").model_dump(), 422)
        if settings.callback_secret is None:
            detail = "callbacks are signed: the server needs ZYRA_CALLBACK_SECRET to accept a callback_url"
            return JSONResponse(ErrorPublic(detail=detail, field="callback_url").model_dump(), 422)
    record = RunRecord(
        job_id=new_run_id(),
        status=Status.queued,
        stage=invocation.stage,
        command=invocation.command,
        argv=invocation.argv,
        inputs=[{"file_id": i.file_id, "name": i.name} for i in invocation.inputs],
        created_at=now(),
        timeout_seconds=timeout,
        callback_url=body.callback_url,
        idempotency_key=idempotency_key,
        owner=owner,
    )
    try:
        record, _created = await services.backend.submit(record)
    except Busy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    if body.mode == "async":
        return JSONResponse(RunAccepted(job_id=record.job_id).model_dump(), 202)
    # a server told to stop answers at once instead of being cut off mid-wait: the client follows the run
    # through another replica (or this one after its restart)
    waited, final = await services.draining.first(services.backend.wait(record.job_id, settings.sync_wait_seconds))
    record = final if waited and final is not None else await services.backend.get(record.job_id)
    if not record.status.final:  # the run goes on; the client follows it like an async one
        return JSONResponse(RunAccepted(job_id=record.job_id).model_dump(), 202)
    stdout, stderr = await full_logs(record, services.storage, services.relay, services.settings.log_tail_bytes)
    result = RunSyncPublic(
        status="success" if record.status == Status.succeeded else "error",
        stdout=stdout,
        stderr=stderr,
        exit_code=record.exit_code,
        job_id=record.job_id,
        reason=record.reason,
        outputs=record.outputs,
    )
    return JSONResponse(result.model_dump(mode="json"))


@router.get("/jobs/{job_id}", summary="A run's status, logs, exit code, reason and outputs")
async def get_job(job_id: str, services: ServicesDep, _owner: OwnerDep) -> JobPublic:
    record = await _get(services, job_id)
    stdout, stderr = await full_logs(record, services.storage, services.relay, services.settings.log_tail_bytes)
    return JobPublic.from_record(record, stdout=stdout, stderr=stderr)


@router.delete("/jobs/{job_id}", summary="Cancel a queued or running run")
async def cancel_job(job_id: str, services: ServicesDep, _owner: OwnerDep) -> JobPublic:
    try:
        record = await services.backend.cancel(job_id)
    except NotFound:
        raise HTTPException(404, f"no job {job_id!r}") from None
    stdout, stderr = await full_logs(record, services.storage, services.relay, services.settings.log_tail_bytes)
    return JobPublic.from_record(record, stdout=stdout, stderr=stderr)


@router.get(
    "/jobs/{job_id}/download",
    summary="Download an output (?file=NAME), or all of them as a zip (?zip=1)",
    response_class=StreamingResponse,
    response_model=None,
)
async def download(
    job_id: str, services: ServicesDep, _owner: OwnerDep, file: str | None = None, zip: bool = False
) -> StreamingResponse | FileResponse:
    record = await _get(services, job_id)
    if not record.status.final:
        raise HTTPException(409, f"job {job_id} is {record.status.value}; outputs exist once it has ended")
    names = [o.name for o in record.outputs]
    if not names:
        raise HTTPException(404, f"job {job_id} wrote no output files")
    prefix = storages.output_prefix(job_id)
    if zip or (file is None and len(names) > 1):
        path = await asyncio.to_thread(_zip, services.storage, prefix, names)
        return FileResponse(
            path, media_type="application/zip", filename=f"{job_id}.zip", background=BackgroundTask(os.unlink, path)
        )
    name = file or names[0]
    if name not in names:
        raise HTTPException(404, f"job {job_id} has no output {name!r}; it has: {', '.join(names)}")
    try:
        chunks = await asyncio.to_thread(services.storage.iter_bytes, prefix + name)
    except storages.NotFound:
        raise HTTPException(410, f"output {name!r} of job {job_id} is no longer in storage") from None
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return StreamingResponse(
        iterate_in_threadpool(chunks),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{os.path.basename(name)}"'},
    )


def _zip(storage: storages.Storage, prefix: str, names: list[str]) -> str:
    fd, path = tempfile.mkstemp(suffix=".zip")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in names:
                with archive.open(name, "w", force_zip64=True) as member:
                    for chunk in storage.iter_bytes(prefix + name):
                        member.write(chunk)
    except BaseException:
        os.unlink(path)  # no half-built zip left behind when storage fails
        raise
    return path
