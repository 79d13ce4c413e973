"""Reading jobs through the ORM: one job, a page of them, its row errors, its org."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import cursors
from core.lookup import org_row
from core.models import JobRowError, UploadJob, WebhookDelivery


def get_job(session: Session, org_id: int, job_id: int) -> UploadJob:
    return org_row(session, UploadJob, org_id, job_id, "job")


def list_jobs(
    session: Session,
    org_id: int,
    *,
    series_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[tuple[UploadJob, WebhookDelivery | None]], str | None]:
    """A page of the org's jobs, newest first, each with its webhook delivery (None: none
    yet), in one query for the page; and the cursor of the next page."""
    query = (
        select(UploadJob, WebhookDelivery)
        .outerjoin(WebhookDelivery, WebhookDelivery.job_id == UploadJob.id)
        .where(UploadJob.org_id == org_id)
    )
    # The filters a caller may give, each narrowing the same ordered page.
    if series_id is not None:
        query = query.where(UploadJob.series_id == series_id)
    if status is not None:
        query = query.where(UploadJob.status == status)
    if cursor:
        query = query.where(UploadJob.id < cursors.decode(cursor))
    rows: list[tuple[UploadJob, WebhookDelivery | None]] = [
        (job, delivery)
        for job, delivery in session.execute(query.order_by(UploadJob.id.desc()).limit(limit + 1))
    ]
    next_cursor = cursors.encode(rows[limit - 1][0].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


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
