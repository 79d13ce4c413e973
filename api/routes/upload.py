"""Capillary-compatible upload and status endpoints."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from api import multipart
from api.deps import OrgTx, UploadOrgId
from api.doorbell import enqueue_job
from api.errors import ERROR_RESPONSES, UPLOAD_RESPONSES
from core import metrics, reference, uploads
from core.db import transaction
from core.errors import DomainError, ErrorKind, FieldProblem
from core.jobs import documents
from core.limits import MAX_ID
from core.models import UploadJob
from core.storage import get_storage

log = logging.getLogger(__name__)
router = APIRouter(prefix="/coupon/api/v1/upload", tags=["capillary"])

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

T = TypeVar("T")


def _result(
    org_id: int, series_id: int, file_name: str, job_list: list[UploadJob]
) -> dict[str, Any]:
    return {
        "orgId": org_id,
        "couponSeriesId": series_id,
        "fileName": file_name,
        "redeemUploadJobStatuses": [documents.capillary_status(job) for job in job_list],
    }


@router.post(
    "/redeemFile/{couponSeriesId}",
    status_code=202,
    openapi_extra=UPLOAD_BODY,
    responses=UPLOAD_RESPONSES,
)
async def upload_redeemed_coupons(
    series_id: SeriesId, request: Request, org_id: UploadOrgId
) -> JSONResponse:
    """Upload a CSV of redeemed coupons; answers at once with the job, which runs later."""
    key = _idempotency_key(request)

    def look_up() -> UploadJob | None:
        with transaction(org_id) as session:
            reference.get_series(session, org_id, series_id)
            return uploads.job_for_key(session, org_id, key) if key is not None else None

    # Before a byte of the file is read: a key already used for another series is a 409 now,
    # and a key that made a job already means that nothing will be stored, whatever follows.
    earlier = await run_in_threadpool(_once_more_if_disconnected, look_up)
    if earlier is not None and earlier.series_id != series_id:
        raise uploads.key_conflict()

    storage = get_storage()
    sink = uploads.FileSink(storage, org_id, store=earlier is None)
    try:
        form = await multipart.read_form(request, sink)
        fp = uploads.fingerprint(org_id, series_id, form, sink.sha256.hexdigest()) if key else None
        if earlier is not None:
            if earlier.request_fingerprint != fp:
                raise uploads.key_conflict()
            job, created = earlier, False
        else:
            # In the threadpool: judging may resolve the callbackUrl's host.
            plan = await run_in_threadpool(uploads.judge, form, sink)

            def persist() -> tuple[UploadJob, bool]:
                with transaction(org_id) as session:
                    if key is not None and fp is not None:
                        found = uploads.existing_for_key(session, org_id, key, fp)
                        if found is not None:
                            return found, found.storage_key == sink.key
                    job = uploads.create_job(
                        session,
                        org_id=org_id,
                        series_id=series_id,
                        plan=plan,
                        sink=sink,
                        file_name=form.file_name or "upload.csv",
                        idempotency_key=key,
                        request_fingerprint=fp,
                    )
                    return job, job.storage_key == sink.key

            job, created = await run_in_threadpool(_once_more_if_disconnected, persist)
    except Exception:
        await run_in_threadpool(sink.discard)
        raise
    except BaseException:
        sink.discard()  # cancelled: no awaiting any more
        raise

    if created:
        metrics.upload_stored(sink.size)
        # After the commit, never before: a worker must find the job it is told about.
        try:
            await run_in_threadpool(enqueue_job, job.id)
        except Exception:
            log.warning("job %s: could not enqueue; the sweeper will", job.id, exc_info=True)
    elif sink.stores:
        # A concurrent request with the same key made the job first: ours is not needed.
        await run_in_threadpool(storage.delete, sink.key)
    body = {
        "success": True,
        "status": {"success": True, "code": 200, "message": "Upload queued"},
        "result": _result(org_id, series_id, job.file_name, [job]),
    }
    return JSONResponse(body, status_code=202)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        raise DomainError(
            ErrorKind.INVALID,
            "Idempotency-Key must be 1 to 255 characters",
            [FieldProblem("Idempotency-Key", "1 to 255 characters")],
        )
    return key


def _once_more_if_disconnected(work: Callable[[], T]) -> T:
    """Run `work` (one transaction), and once more on a new connection when the server closed
    the first one under it (a restart, a failover, a terminated backend): the file is stored
    already, and a client should not have to send it again for that. A second loss is a 503
    (api/errors.py). A commit whose answer was lost may have made the job: the retry then finds
    it by its Idempotency-Key; without one, its rows would all be 790 in a second job."""
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("the database connection was lost during an upload; trying once more")
        return work()


@router.get("/getUploadRedeemedCouponStatus/{couponSeriesId}", responses=ERROR_RESPONSES)
def upload_statuses(series_id: SeriesId, tx: OrgTx) -> dict[str, Any]:
    """Every upload job of the series, newest first."""
    reference.get_series(tx.session, tx.org_id, series_id)
    rows = (
        tx.session.query(UploadJob)
        .filter(UploadJob.org_id == tx.org_id, UploadJob.series_id == series_id)
        .order_by(UploadJob.id.desc())
        .all()
    )
    return {
        "success": True,
        "status": {"success": True, "code": 200, "message": "Success"},
        "result": _result(tx.org_id, series_id, rows[0].file_name if rows else "", rows),
    }
