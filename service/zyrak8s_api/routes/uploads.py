"""File uploads, streamed into storage."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zyrak8s_api import uploads
from zyrak8s_api.deps import OwnerDep, ServicesDep
from zyrak8s_api.schemas import UploadPublic

router = APIRouter(tags=["uploads"])


@router.post(
    "/upload",
    summary="Upload one file (multipart field 'file'); pass file_id:<id> in a run's args",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}
                }
            },
        }
    },
    responses={413: {"description": "larger than ZYRA_UPLOAD_MAX_BYTES"}},
)
async def upload(request: Request, services: ServicesDep, _owner: OwnerDep) -> UploadPublic:
    settings = services.settings
    return await uploads.receive(request, services.storage, settings.data_dir / "tmp", settings.upload_max_bytes)
