"""Job status, row errors, the errors CSV and cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import Bucket, OrgTx, admit, presented_key
from api.doorbell import ring_delivery_if_due
from api.errors import ERROR_RESPONSES
from api.events import job_events
from core import reference, reports, reverts
from core.codes import error_name
from core.errors import invalid, not_found
from core.jobs import cancel, documents, poll, queries
from core.limits import MAX_ID, MAX_PAGE
from core.models import JOB_STATUSES

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

# Ids are BIGINTs: anything larger names nothing and must not reach the database.
JobId = Annotated[int, Path(alias="jobId", gt=0, le=MAX_ID)]


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
        "items": [documents.job_document(job, delivery=delivery) for job, delivery in rows],
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
    return documents.job_document(found.job, delivery=found.delivery)


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
    return {
        "items": [
            {
                "rowNumber": e.row_number,
                "errorCode": e.code,
                "errorName": error_name(e.code),
                "errorMessage": e.message,
                "fields": list(e.cells),
            }
            for e in page
        ],
        "nextAfterRow": page[-1].row_number if len(page) == limit else None,
    }


@router.get("/{jobId}/errors.csv")
def get_errors_csv(job_id: JobId, tx: OrgTx) -> StreamingResponse:
    """The failed rows as CSV: fix them and upload the file again with the same uploadHeaders."""
    job = queries.get_job(tx.session, tx.org_id, job_id)
    stem = job.file_name.rsplit(".", 1)[0] or "upload"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:100]
    return StreamingResponse(
        reports.report_lines(tx.org_id, job.id, list(job.report_header)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{safe}-errors-{job.id}.csv"'},
    )


@router.post("/{jobId}/cancel")
def cancel_job(job_id: JobId, tx: OrgTx, background: BackgroundTasks) -> dict[str, Any]:
    """Stop the job at its next chunk boundary; rows already applied stay applied."""
    reverts.refuse_cancel(queries.get_job(tx.session, tx.org_id, job_id))
    job = cancel.request_cancel(tx.session, tx.org_id, job_id)
    if job.status == "CANCELLED" and job.callback_url is not None:
        # A queued job ended here: ring for its webhook once the request has committed
        # (background tasks run after the response, the transaction before it).
        background.add_task(ring_delivery_if_due, job.id)
    return documents.job_document(job)
