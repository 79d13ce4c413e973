"""Cancelling a job, and forgetting a dry run's would-be redemptions as a job ends.

A job nobody works on ends at once (`request_cancel`), or when the next claim finds the
request (`end_if_cancelled`); one a worker holds ends at its next chunk boundary (core/apply.py).
`request_cancel`, `end_if_cancelled`, `lease.finish` and `lease.fail` call `discard_dry_run`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.errors import DomainError, ErrorKind
from core.lookup import org_row
from core.models import UploadJob
from core.models.jobs import TERMINAL_STATUSES


def request_cancel(session: Session, org_id: int, job_id: int) -> UploadJob:
    """A job nobody is working on ends at once (queued, between slices, or waiting for its
    retry after a loss, which may be minutes away); one a worker holds, at its next chunk
    boundary."""
    job = org_row(session, UploadJob, org_id, job_id, "job", for_update=True)
    if job.status in TERMINAL_STATUSES:
        raise DomainError(ErrorKind.CONFLICT, f"the job has already ended ({job.status})")
    job.cancel_requested = True
    if job.status == "QUEUED" or job.lease_owner is None:
        job.status = "CANCELLED"
        job.finished_at = datetime.now(UTC)
        job.retry_after = None
        discard_dry_run(session, job.id)
    job.updated_at = datetime.now(UTC)
    session.flush()
    return job


def end_if_cancelled(session: Session, job_id: int) -> None:
    """End a job nobody holds whose cancel came while it waited between slices (a claim
    that could not take the job calls this). A dry run's would-be redemptions go with it: the
    cancel may have come while a worker held the job, which then handed it on before its next
    chunk could end it."""
    ended = session.execute(
        text(
            """
            UPDATE upload_jobs SET status = 'CANCELLED', finished_at = clock_timestamp(),
                updated_at = clock_timestamp(), retry_after = NULL
            WHERE id = (
                SELECT id FROM upload_jobs
                WHERE id = :job_id AND status IN ('QUEUED', 'RUNNING') AND cancel_requested
                  AND lease_owner IS NULL
                FOR NO KEY UPDATE SKIP LOCKED
            )
            RETURNING id
            """
        ),
        {"job_id": job_id},
    ).first()
    if ended is not None:
        discard_dry_run(session, job_id)


def discard_dry_run(session: Session, job_id: int) -> None:
    """Forget what a dry run would have redeemed (nothing, for a real job)."""
    session.execute(text("DELETE FROM dry_run_redemptions WHERE job_id = :id"), {"id": job_id})
