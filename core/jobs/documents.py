"""A job as the API shows it: GET /v1/jobs/{id}, the webhook's body, Capillary's status entry."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from core.codes import error_name
from core.jobs import queries
from core.models import UploadJob, WebhookDelivery
from core.models.jobs import TERMINAL_STATUSES


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Found(Enum):
    LOOK_UP = "look up"  # not read yet: callback_document reads it


def callback_document(
    job: UploadJob, delivery: WebhookDelivery | Found | None = Found.LOOK_UP
) -> dict[str, Any] | None:
    """The delivery of the job's completion webhook: null without a callbackUrl.

    The delivery is looked up in the job's session unless the caller read it already."""
    if job.callback_url is None:
        return None
    if delivery is Found.LOOK_UP:
        session = object_session(job)
        delivery = (
            None
            if session is None
            else session.execute(
                select(WebhookDelivery).where(WebhookDelivery.job_id == job.id)
            ).scalar_one_or_none()
        )
    if not isinstance(delivery, WebhookDelivery):  # the job has not ended yet
        return {"url": job.callback_url, "state": "pending", "attempts": [], "nextAttemptAt": None}
    return {
        "url": delivery.url,
        "state": delivery.state,
        "attempts": list(delivery.attempts),
        "nextAttemptAt": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
    }


def reverted_by(job: UploadJob, known: int | Found | None = Found.LOOK_UP) -> int | None:
    """The revert of this import that has not failed (None: none), looked up in the job's
    session unless the caller read it already (a list reads its page's in its one query)."""
    if not isinstance(known, Found):
        return known
    session = object_session(job)
    if session is None or job.kind != "IMPORT":
        return None
    return queries.reverted_by(session, job.id)


def job_document(
    job: UploadJob,
    now: datetime | None = None,
    *,
    callback: bool = True,
    delivery: WebhookDelivery | Found | None = Found.LOOK_UP,
    reverted_by_job_id: int | Found | None = Found.LOOK_UP,
) -> dict[str, Any]:
    """The job as GET /v1/jobs/{id} shows it (the webhook's body leaves `callback` out)."""
    document: dict[str, Any] = {
        "jobId": job.id,
        "kind": job.kind,
        "couponSeriesId": job.series_id,
        "status": job.status,
        "fileName": job.file_name,
        "fileSize": job.file_size,
        "fileSha256": job.file_sha256,
        "uploadedBy": {"keyId": job.uploaded_by_key_id, "keyLabel": job.uploaded_by_label},
        "revertsJobId": job.reverts_job_id,
        "revertedByJobId": reverted_by(job, reverted_by_job_id),
        "maxErrorRate": job.max_error_rate,
        "details": job.details,
        "customerIdentifier": job.customer_identifier,
        "couponIdentifier": job.coupon_identifier,
        "dryRun": job.dry_run,
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "progress": _progress(job, now or datetime.now(UTC)),
        "errorSummary": [
            {"code": int(code), "name": error_name(int(code)), "count": count}
            for code, count in sorted(job.error_counts.items(), key=lambda kv: int(kv[0]))
        ],
        "failureReason": job.failure_reason,
        "links": _links(job),
    }
    if callback:
        document["callback"] = callback_document(job, delivery)
    return document


def _progress(job: UploadJob, now: datetime) -> dict[str, Any]:
    """How far the job has got: bytes and rows, its rate and, while it runs, the time left."""
    total = job.file_size or 0
    done = min(job.bytes_processed, total)
    if job.status in ("COMPLETED", "COMPLETED_WITH_ERRORS"):
        done = total
    percent = round(100.0 * done / total, 1) if total else 100.0
    rate: float | None = None
    eta: float | None = None
    if job.started_at is not None:
        end = job.finished_at or now
        elapsed = max((end - job.started_at).total_seconds(), 1e-3)
        rate = round(job.rows_processed / elapsed, 1)
        if job.status == "RUNNING" and done > 0:
            eta = round(elapsed * (total - done) / done, 1)
        elif job.status in TERMINAL_STATUSES:
            eta = 0.0
    return {
        "bytesProcessed": done,
        "bytesTotal": total,
        "percent": percent,
        "rowsProcessed": job.rows_processed,
        "rowsSucceeded": job.rows_succeeded,
        "rowsFailed": job.rows_failed,
        "rowsPerSecond": rate,
        "etaSeconds": eta,
    }


def file_kept(job: UploadJob) -> bool:
    """Whether the job's uploaded file is still there to fetch: a revert has none of its own
    (its storage key is empty), and retention purges an import's."""
    return job.storage_key != "" and job.file_deleted_at is None


def _links(job: UploadJob) -> dict[str, str | None]:
    """Where the job's own resources are (its reports, each a route of its own; the file only
    while it is kept)."""
    base = f"/v1/jobs/{job.id}"
    return {
        "self": base,
        "errors": f"{base}/errors",
        "errorsCsv": f"{base}/errors.csv",
        "successes": f"{base}/successes",
        "successesCsv": f"{base}/successes.csv",
        "file": f"{base}/file" if file_kept(job) else None,
    }


def capillary_status(job: UploadJob) -> dict[str, Any]:
    """One entry of Capillary's redeemUploadJobStatuses, every field present (DESIGN.md)."""
    base = f"/v1/jobs/{job.id}"
    # A dry run applies nothing: no row of it is a success to list.
    applied = job.rows_succeeded > 0 and not job.dry_run
    return {
        "jobId": job.id,
        "uploadRedeemedCouponStatus": job.status,
        "createdOn": str(epoch_ms(job.created_at)),
        "updatedOn": str(epoch_ms(job.updated_at)),
        "errorFileUrl": f"{base}/errors.csv" if job.rows_failed > 0 else None,
        "successFileUrl": f"{base}/successes.csv" if applied else None,
        "uploadedFileUrl": f"{base}/file" if file_kept(job) else None,
        "totalUploadedCount": job.rows_processed,
        "actualRowCount": job.rows_succeeded,
        "errorCount": job.rows_failed,
        # Capillary's staging table; this service has none to name.
        "uploadTableName": None,
        "uploadedFileName": job.file_name,
    }
