"""Reading jobs through the ORM: one job, a page of them, its row errors, its org."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session, aliased

from core import cursors
from core.lookup import org_row
from core.models import JobRowError, UploadJob, WebhookDelivery


def get_job(session: Session, org_id: int, job_id: int) -> UploadJob:
    return org_row(session, UploadJob, org_id, job_id, "job")


def reverted_by(session: Session, job_id: int) -> int | None:
    """The revert of this import that has not failed: there is at most one (migration 0012)."""
    return session.execute(
        select(UploadJob.id).where(UploadJob.reverts_job_id == job_id, UploadJob.status != "FAILED")
    ).scalar_one_or_none()


def list_jobs(
    session: Session,
    org_id: int,
    *,
    series_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[tuple[UploadJob, WebhookDelivery | None, int | None]], str | None]:
    """A page of the org's jobs, newest first, each with its webhook delivery (None: none
    yet) and the id of the revert that undoes it (None: none), in one query for the page;
    and the cursor of the next page."""
    revert = aliased(UploadJob)
    query = (
        select(UploadJob, WebhookDelivery, revert.id)
        .outerjoin(WebhookDelivery, WebhookDelivery.job_id == UploadJob.id)
        # At most one revert of a job has not failed (a unique index): no row is doubled.
        .outerjoin(revert, (revert.reverts_job_id == UploadJob.id) & (revert.status != "FAILED"))
        .where(UploadJob.org_id == org_id)
    )
    # The filters a caller may give, each narrowing the same ordered page.
    if series_id is not None:
        query = query.where(UploadJob.series_id == series_id)
    if status is not None:
        query = query.where(UploadJob.status == status)
    if cursor:
        query = query.where(UploadJob.id < cursors.decode(cursor))
    rows: list[tuple[UploadJob, WebhookDelivery | None, int | None]] = [
        (job, delivery, reverted)
        for job, delivery, reverted in session.execute(
            query.order_by(UploadJob.id.desc()).limit(limit + 1)
        )
    ]
    next_cursor = cursors.encode(rows[limit - 1][0].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def series_jobs(session: Session, org_id: int, series_id: int, *, limit: int) -> list[UploadJob]:
    """The series' jobs, newest first (Capillary's status list)."""
    return list(
        session.execute(
            select(UploadJob)
            .where(UploadJob.org_id == org_id, UploadJob.series_id == series_id)
            .order_by(UploadJob.id.desc())
            .limit(limit)
        ).scalars()
    )


def row_errors(session: Session, job_id: int, *, after_row: int, limit: int) -> list[JobRowError]:
    return list(
        session.execute(
            select(JobRowError)
            .where(JobRowError.job_id == job_id, JobRowError.row_number > after_row)
            .order_by(JobRowError.row_number)
            .limit(limit)
        ).scalars()
    )


def org_of(session: Session, job_id: int) -> int | None:
    """The org a job belongs to: all a worker knows from its message is the job id."""
    org_id = session.execute(text("SELECT br_job_org(:id)"), {"id": job_id}).scalar_one()
    return None if org_id is None else int(org_id)
