"""Streaming multipart upload: request body -> parser -> a temporary file on disk -> storage.

The body is never held in memory: python-multipart parses it chunk by chunk and writes the file part to disk
(MAX_MEMORY_FILE_SIZE 0). The size limit is enforced while reading, so an oversized upload is refused (413)
as soon as it crosses the limit, and its partial file is removed. Nothing is stored unless the whole file
arrived.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from fastapi import HTTPException, Request
from python_multipart.multipart import File, create_form_parser
from python_multipart.exceptions import FormParserError

from zyrak8s_core import storage as storages
from zyrak8s_api import metrics
from zyrak8s_api.schemas import UploadPublic

__all__ = ["receive", "check_filename", "resolve_file"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the one file part


def check_filename(raw: str) -> str:
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if not _NAME.match(name) or name in (".", ".."):
        raise HTTPException(
            400,
            f"file name {raw!r} is not allowed: use letters, digits, '.', '_', '+' and '-' "
            "(at most 200 characters, not starting with a dot)",
        )
    return name


async def receive(request: Request, storage: storages.Storage, tmp_dir: Path, max_bytes: int) -> UploadPublic:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(415, "send the file as multipart/form-data with a part named 'file'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise HTTPException(413, f"upload larger than the limit of {max_bytes} bytes")

    tmp_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="upload-", dir=tmp_dir))  # removed whole, whatever happens
    try:
        upload, name = await _parse(request, content_type, scratch, max_bytes)
        path = Path(os.fsdecode(upload.actual_file_name))
        file_id = uuid.uuid4().hex
        key = storages.upload_key(file_id, name)
        try:
            if isinstance(storage, storages.LocalStorage):
                await asyncio.to_thread(storage.move_file, key, path)
            else:
                await asyncio.to_thread(storage.put_file, key, path)
        except storages.StorageError as exc:
            raise HTTPException(503, f"storage refused the upload: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    metrics.UPLOAD_BYTES.inc(upload.size)
    return UploadPublic(file_id=file_id, filename=name, size=upload.size, path=f"inputs/{name}", ref=f"file_id:{file_id}")


async def _parse(request: Request, content_type: str, scratch: Path, max_bytes: int) -> tuple[File, str]:
    files: list[File] = []
    parser = create_form_parser(
        {"Content-Type": content_type.encode()},
        on_field=lambda field: None,
        on_file=files.append,
        config={"MAX_MEMORY_FILE_SIZE": 0, "UPLOAD_DIR": str(scratch), "UPLOAD_DELETE_TMP": False},
    )
    too_large = HTTPException(413, f"upload larger than the limit of {max_bytes} bytes")
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + MULTIPART_OVERHEAD:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise HTTPException(400, f"malformed multipart body: {exc}") from None
    finally:
        for f in files:
            f.file_object.flush()
    wanted = [f for f in files if f.field_name == b"file"]
    if len(wanted) != 1:
        raise HTTPException(422, "expected exactly one file part named 'file'")
    upload = wanted[0]
    if upload.size > max_bytes:
        raise too_large
    name = check_filename((upload.file_name or b"").decode(errors="replace"))
    if upload.in_memory:  # an empty file: nothing was written, so it never reached the disk
        upload.flush_to_disk()
    upload.file_object.close()
    return upload, name


def resolve_file(storage: storages.Storage, file_id: str) -> str:
    """The stored name of an upload; raises LookupError when there is none."""
    found = storage.list(f"uploads/{file_id}/")
    if not found:
        raise LookupError(file_id)
    return found[0].key.rsplit("/", 1)[-1]
