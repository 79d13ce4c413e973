"""Jobs: made by an upload, their status, row errors, the errors CSV, the file, cancel."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import uploading
from api.deps import Bucket, OrgTx, UploaderOf, admit, presented_key
from api.doorbell import ring_delivery_if_due
from api.errors import ERROR_RESPONSES, UPLOAD_RESPONSES
from api.events import job_events
from api.routes.upload import UPLOAD_BODY
from core import reference, reports
from core.codes import error_name
from core.errors import invalid, not_found
from core.jobs import cancel, documents, original, poll, queries
from core.limits import MAX_ID, MAX_PAGE
from core.models import JOB_STATUSES
from core.reverts import request as revert_request

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

# Ids are BIGINTs: anything larger names nothing and must not reach the database.
JobId = Annotated[int, Path(alias="jobId", gt=0, le=MAX_ID)]


@router.post(
    "",
    status_code=202,
    openapi_extra=UPLOAD_BODY,
    responses={
        **UPLOAD_RESPONSES,
        202: {"description": "The job, made (or the Idempotency-Key's); Location names it"},
    },
)
async def create_job(
    request: Request,
    who: UploaderOf,
    couponSeriesId: Annotated[int, Query(gt=0, le=MAX_ID)],
) -> JSONResponse:
    """Upload a file of redeemed coupons (the form of redeemFile); answers at once with the
    job document, and the job runs later.

    The series is a query parameter, not a form field, as it is in redeemFile's path: it is
    judged (404) and an Idempotency-Key matched before a byte of the file is read."""
    job = await uploading.accept_upload(request, who, couponSeriesId)
    return JSONResponse(
        documents.job_document(job),
        status_code=202,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


@router.get("")
def list_jobs(
    tx: OrgTx,
    couponSeriesId: Annotated[int | None, Query(gt=0, le=MAX_ID)] = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The org's jobs, newest first."""
    if status is not None and status not in JOB_STATUSES:
        raise invalid("status", f"status must be one of {', '.join(JOB_STATUSES)}")
    if couponSeriesId is not None:
        reference.get_series(tx.session, tx.org_id, couponSeriesId)  # another org's series: 404
    rows, next_cursor = queries.list_jobs(
        tx.session, tx.org_id, series_id=couponSeriesId, status=status, limit=limit, cursor=cursor
    )
    return {
        "items": [
            documents.job_document(job, delivery=delivery, reverted_by_job_id=reverted)
            for job, delivery, reverted in rows
        ],
        "nextCursor": next_cursor,
    }


@router.get("/{jobId}")
async def get_job(job_id: JobId, request: Request) -> dict[str, Any]:
    """The job's status, progress and error summary."""
    # The route clients poll: its key, rate, job and document go to the threadpool in one
    # trip, where OrgTx and a plain route took three (dependency in, route, dependency out),
    # each a wait for a thread and the GIL when the machine is busy, and to Postgres in one
    # round trip (poll.poll; bench/README.md).
    return await run_in_threadpool(_job_document, request, job_id)


def _job_document(request: Request, job_id: int) -> dict[str, Any]:
    found = poll.poll(presented_key(request), job_id)
    admit(found.key, Bucket.REQUESTS)
    if found.job is None:
        raise not_found("job")
    return documents.job_document(
        found.job, delivery=found.delivery, reverted_by_job_id=found.reverted_by
    )


@router.get(
    "/{jobId}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `job` (the job document) at once and at every "
            "change, then `end` (the final document) and the stream closes",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
def job_events_stream(job_id: JobId, tx: OrgTx, request: Request) -> StreamingResponse:
    """Live progress: the job document at every chunk, and a last event when the job ends."""
    job = queries.get_job(tx.session, tx.org_id, job_id)  # another org's job: 404 before streaming
    return StreamingResponse(
        job_events(request, tx.org_id, job.id),
        media_type="text/event-stream",
        # No caching, and no buffering by a proxy in front (nginx honours X-Accel-Buffering).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{jobId}/errors")
def get_row_errors(
    job_id: JobId,
    tx: OrgTx,
    afterRow: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The job's failed rows in file order, a page at a time."""
    job = queries.get_job(tx.session, tx.org_id, job_id)
    page = queries.row_errors(tx.session, job.id, after_row=afterRow, limit=limit)
    purged = job.file_deleted_at
    # Once the file is purged, so are the cells (core/retention.py): each row says so.
    note = "" if purged is None else " " + reports.purged_note(purged)
    return {
        "items": [
            {
                "rowNumber": e.row_number,
                "errorCode": e.code,
                "errorName": error_name(e.code),
                "errorMessage": e.message + note,
                "fields": [] if purged else list(e.cells),
            }
            for e in page
        ],
        "nextAfterRow": page[-1].row_number if len(page) == limit else None,
        "cellsPurgedAt": documents.iso(purged),
    }


@router.get("/{jobId}/errors.csv")
def get_errors_csv(job_id: JobId, tx: OrgTx) -> StreamingResponse:
    """The failed rows as CSV: fix them and upload the file again with the same uploadHeaders."""
    job = queries.get_job(tx.session, tx.org_id, job_id)
    stem = job.file_name.rsplit(".", 1)[0] or "upload"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:100]
    return StreamingResponse(
        reports.report_lines(tx.org_id, job.id, list(job.report_header), job.file_deleted_at),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}-errors-{job.id}.csv"'},
    )


@router.get(
    "/{jobId}/file",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file as uploaded, byte for byte",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        410: {"description": "Deleted after its retention period"},
    },
)
def get_file(job_id: JobId, tx: OrgTx) -> StreamingResponse:
    """The job's file as it was uploaded, while it is kept."""
    job = queries.get_job(tx.session, tx.org_id, job_id)
    # Opened here, in the threadpool; the response then reads it there too, off the event loop.
    handle = original.open_original(job)
    return StreamingResponse(
        original.chunks(handle),
        media_type="application/octet-stream",
        headers={"Content-Disposition": _attachment(job.file_name)},
    )


def _attachment(file_name: str) -> str:
    """The file's own name for a download: plain ASCII for old clients, UTF-8 (RFC 6266) for
    the rest; never a quote, a slash or a control character that could break the header."""
    plain = "".join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\/' else "_" for ch in file_name
    )
    encoded = quote(file_name, safe="")
    return f"attachment; filename=\"{plain or 'upload'}\"; filename*=UTF-8''{encoded}"


@router.post("/{jobId}/cancel")
def cancel_job(job_id: JobId, tx: OrgTx, background: BackgroundTasks) -> dict[str, Any]:
    """Stop the job at its next chunk boundary; rows already applied stay applied."""
    revert_request.refuse_cancel(queries.get_job(tx.session, tx.org_id, job_id))
    job = cancel.request_cancel(tx.session, tx.org_id, job_id)
    if job.status == "CANCELLED" and job.callback_url is not None:
        # A queued job ended here: ring for its webhook once the request has committed
        # (background tasks run after the response, the transaction before it).
        background.add_task(ring_delivery_if_due, job.id)
    return documents.job_document(job)
