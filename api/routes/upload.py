"""Capillary-compatible upload and status endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from api import uploading
from api.deps import OrgTx, UploaderOf
from api.errors import ERROR_RESPONSES, UPLOAD_RESPONSES
from core import reference
from core.jobs import documents, queries
from core.limits import MAX_ID, MAX_PAGE
from core.models import UploadJob

router = APIRouter(prefix="/coupon/api/v1/upload", tags=["capillary"])


class CapillaryError(BaseModel):
    field: str
    message: str


class CapillaryRefusal(BaseModel):
    """A refusal on Capillary's routes, in Capillary's shape (api/errors.py answers so)."""

    success: bool
    status: int
    message: str
    errors: list[CapillaryError]


def _capillary(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    return {code: {**answer, "model": CapillaryRefusal} for code, answer in responses.items()}


CAPILLARY_ERROR_RESPONSES = _capillary(ERROR_RESPONSES)
CAPILLARY_UPLOAD_RESPONSES = _capillary(UPLOAD_RESPONSES)

# Capillary's name for it; a BIGINT, so anything larger names nothing.
SeriesId = Annotated[int, Path(alias="couponSeriesId", gt=0, le=MAX_ID)]

# The body is read as a stream (never buffered by the framework), so it is described here.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["customerIdentifier", "couponIdentifier", "uploadHeaders", "file"],
                    "properties": {
                        "customerIdentifier": {
                            "type": "string",
                            "enum": ["MOBILE", "EXTERNAL_ID", "EMAIL", "USER_ID"],
                        },
                        "couponIdentifier": {
                            "type": "string",
                            "enum": ["COUPON_ID", "COUPON_CODE"],
                        },
                        "uploadHeaders": {
                            "type": "string",
                            "description": "JSON object: column key -> 0-based column index"
                            " or a name of the header row (case and spaces ignored)",
                        },
                        "file": {"type": "string", "format": "binary"},
                        "details": {"type": "string", "maxLength": 1000},
                        "delimiter": {"type": "string"},
                        "hasHeader": {"type": "string", "enum": ["true", "false"]},
                        "dryRun": {"type": "string", "enum": ["true", "false"]},
                        "maxErrorRate": {
                            "type": "string",
                            "description": "the share of failed rows above which the job"
                            " stops, FAILED: 0.05 or 5% (default: the org's"
                            " defaultMaxErrorRate, else none)",
                        },
                        "callbackUrl": {
                            "type": "string",
                            "maxLength": 2000,
                            "description": "http(s) URL that gets the signed job document"
                            " when the job ends",
                        },
                    },
                }
            }
        },
    }
}


def _result(
    org_id: int, series_id: int, file_name: str, job_list: list[UploadJob]
) -> dict[str, Any]:
    return {
        "orgId": org_id,
        "couponSeriesId": series_id,
        "fileName": file_name,
        "redeemUploadJobStatuses": [documents.capillary_status(job) for job in job_list],
    }


def _answer(result: dict[str, Any]) -> dict[str, Any]:
    # Capillary's own: HTTP 200 and a numeric status, which its clients parse as a number.
    return {"success": True, "status": 200, "result": result}


@router.post(
    "/redeemFile/{couponSeriesId}",
    openapi_extra=UPLOAD_BODY,
    responses=CAPILLARY_UPLOAD_RESPONSES,
)
async def upload_redeemed_coupons(
    series_id: SeriesId, request: Request, who: UploaderOf
) -> dict[str, Any]:
    """Upload a CSV of redeemed coupons; answers at once with the job, which runs later."""
    job = await uploading.accept_upload(request, who, series_id)
    return _answer(_result(who.org_id, series_id, job.file_name, [job]))


@router.get("/getUploadRedeemedCouponStatus/{couponSeriesId}", responses=CAPILLARY_ERROR_RESPONSES)
def upload_statuses(
    series_id: SeriesId,
    tx: OrgTx,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> dict[str, Any]:
    """Every job of the series, newest first (`limit` of them at most)."""
    reference.get_series(tx.session, tx.org_id, series_id)
    rows = queries.series_jobs(tx.session, tx.org_id, series_id, limit=limit)
    return _answer(_result(tx.org_id, series_id, rows[0].file_name if rows else "", rows))
