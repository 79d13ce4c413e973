"""POST /v1/uploads/preview: what an upload of this file would do, with nothing stored."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from api import multipart
from api.deps import UploadOrgId
from api.errors import UPLOAD_RESPONSES
from api.routes import upload
from core import reference, uploads
from core.db import transaction
from core.limits import MAX_ID
from core.storage import get_storage
from core.uploads.preview import PREVIEW_BYTES, preview

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

# The upload's fields, each optional but the file, of which only the start is read.
PREVIEW_BODY: dict[str, Any] = copy.deepcopy(upload.UPLOAD_BODY)
_SCHEMA: dict[str, Any] = PREVIEW_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]
_SCHEMA["required"] = ["file"]
_SCHEMA["properties"]["file"]["description"] = (
    "the file, or its start: only the first 256 KiB are read, so send the other fields before it"
)


@router.post("/preview", openapi_extra=PREVIEW_BODY, responses=UPLOAD_RESPONSES)
async def preview_upload(
    request: Request,
    org_id: UploadOrgId,
    couponSeriesId: Annotated[int | None, Query(gt=0, le=MAX_ID)] = None,
) -> dict[str, Any]:
    """How the service reads the file's start, the mapping its header suggests, and what a
    run would say of its first five records now; nothing is stored."""
    series_id = couponSeriesId
    if series_id is not None:

        def look_up() -> None:
            with transaction(org_id) as session:
                reference.get_series(session, org_id, series_id)  # another org's: 404

        # Before a byte of the body is read, as for an upload.
        await run_in_threadpool(look_up)
    sink = uploads.FileSink(get_storage(), org_id, store=False)
    form = await multipart.read_form(request, sink, file_limit=PREVIEW_BYTES)
    return await run_in_threadpool(preview, form, sink, org_id=org_id, series_id=series_id)
