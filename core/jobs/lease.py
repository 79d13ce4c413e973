"""The lease: a worker claims a job, renews it, hands it on, and finishes, lets go or fails it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import rows_changed, transaction
from core.jobs.cancel import discard_dry_run, end_if_cancelled
from core.settings import get_settings


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    org_id: int
    series_id: int
    customer_identifier: str
    coupon_identifier: str
    upload_headers: dict[str, int]
    delimiter: str
    has_header: bool
    encoding: str
    report_width: int
    storage_key: str
    file_size: int
    bytes_processed: int
    next_record: int
    created_at_ms: int
    dry_run: bool
    error_counts: dict[str, int]


# The claim takes a job nobody holds: a holder whose lease lapsed is not "nobody" until the
# sweeper has recorded its loss (`sweep`), which is the one place that counts losses. A job
# row that is locked is passed over, not waited for: its holder is inside a chunk (or ending
# the job), and a claim that waited would hold its org's claims up behind that chunk.
_CLAIM = text(
    """
    UPDATE upload_jobs SET
        status = 'RUNNING',
        lease_owner = :token,
        lease_expires_at = clock_timestamp() + make_interval(secs => :lease),
        attempts = attempts + CASE WHEN status = 'QUEUED' OR retry_after IS NOT NULL
            THEN 1 ELSE 0 END,
        retry_after = NULL,
        started_at = coalesce(started_at, clock_timestamp()),
        updated_at = clock_timestamp()
    WHERE id = (
        SELECT id FROM upload_jobs
        WHERE id = :job_id
          AND status IN ('QUEUED', 'RUNNING')
          AND NOT cancel_requested
          AND lease_owner IS NULL
          AND (retry_after IS NULL OR retry_after <= clock_timestamp())
        FOR NO KEY UPDATE SKIP LOCKED
      )
      -- A queued job starts only within its org's cap, the org's older queued jobs first:
      -- the places free under the cap go to the oldest in line.
      AND (status = 'RUNNING' OR :cap = 0 OR (
        (SELECT count(*) FROM upload_jobs r
         WHERE r.org_id = upload_jobs.org_id AND r.status = 'RUNNING')
        + (SELECT count(*) FROM upload_jobs q
           WHERE q.org_id = upload_jobs.org_id AND q.status = 'QUEUED'
             AND NOT q.cancel_requested AND q.id < upload_jobs.id)
        < :cap
      ))
    RETURNING id, org_id, series_id, customer_identifier, coupon_identifier, upload_headers,
        delimiter, has_header, encoding, cardinality(report_header) AS report_width,
        storage_key, file_size, bytes_processed, next_record,
        (extract(epoch FROM created_at) * 1000)::bigint AS created_at_ms, dry_run, error_counts
    """
)


def idle_limit_ms() -> str:
    """How long a transaction that holds a job row locked may sit idle: the lease's length.

    The sweeper passes over locked job rows (a holder inside a chunk is not lost), so a
    worker frozen with one locked (stopped, swapped out) would keep its job for ever;
    Postgres ends such a session after this long, by when its lease has lapsed too.
    """
    return str(int(get_settings().lease_seconds * 1000))


@contextmanager
def lease_transaction(org_id: int) -> Iterator[Session]:
    """A transaction of the job's holder on the job's row (renew, hand on, finish, let go)."""
    with transaction() as session:
        session.execute(
            text(
                "SELECT set_config('app.org_id', :org, true),"
                " set_config('idle_in_transaction_session_timeout', :idle, true)"
            ),
            {"org": str(org_id), "idle": idle_limit_ms()},
        )
        yield session


def claim(session: Session, job_id: int, token: str) -> ClaimedJob | None:
    """Take the job's lease, if nobody holds it; None when the job is not ours to run.

    The session must be scoped to the job's org (`org_of`, then `set_org`).
    """
    settings = get_settings()
    # Claims of one org take turns, so that two workers cannot both squeeze under its cap.
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended('bulkredeem.claim.' || org_id, 0)),"
            " set_config('idle_in_transaction_session_timeout', :idle, true)"
            " FROM upload_jobs WHERE id = :job_id"
        ),
        {"job_id": job_id, "idle": idle_limit_ms()},
    )
    row = session.execute(
        _CLAIM,
        {
            "job_id": job_id,
            "token": token,
            "lease": settings.lease_seconds,
            "cap": settings.max_running_jobs_per_org,
        },
    ).one_or_none()
    if row is not None:
        return ClaimedJob(**row._asdict())
    # A cancel that arrives while the job waits between slices ends it here.
    end_if_cancelled(session, job_id)
    return None


def startable(session: Session, org_id: int) -> list[int]:
    """The org's oldest queued jobs that its cap lets start now (to enqueue when one ends)."""
    cap = get_settings().max_running_jobs_per_org
    rows = session.execute(
        text(
            """
            SELECT id FROM upload_jobs
            WHERE org_id = :org AND status = 'QUEUED' AND NOT cancel_requested
            ORDER BY id
            LIMIT CASE WHEN :cap = 0 THEN NULL ELSE greatest(:cap - (
                SELECT count(*) FROM upload_jobs WHERE org_id = :org AND status = 'RUNNING'
            ), 0) END
            """
        ),
        {"org": org_id, "cap": cap},
    ).all()
    return [row.id for row in rows]


def heartbeat(session: Session, job_id: int, token: str) -> bool:
    """Extend the lease while the job runs; False once it is no longer ours.

    The new expiry is reckoned from the moment it is written. A job row that is locked is
    left as it is: the holder's own chunk has it, and renews the lease as it commits; a beat
    that waited for it would, in a worker frozen meanwhile, hold the row locked in its turn.
    """
    ours = session.execute(
        text(
            """
            WITH renewed AS (
                UPDATE upload_jobs
                SET lease_expires_at = clock_timestamp() + make_interval(secs => :lease)
                WHERE id = (
                    SELECT id FROM upload_jobs
                    WHERE id = :job_id AND lease_owner = :token AND status = 'RUNNING'
                    FOR NO KEY UPDATE SKIP LOCKED
                )
                RETURNING id
            )
            SELECT lease_owner = :token AND status = 'RUNNING' FROM upload_jobs
            WHERE id = :job_id
            """
        ),
        {"job_id": job_id, "token": token, "lease": get_settings().lease_seconds},
    ).scalar_one_or_none()
    return bool(ours)


def hand_off(session: Session, job_id: int, token: str) -> bool:
    """Give the lease back so that a new message can carry the job on (slices)."""
    result = session.execute(
        text(
            """
            UPDATE upload_jobs SET lease_owner = NULL, lease_expires_at = NULL,
                enqueued_at = clock_timestamp(), updated_at = clock_timestamp()
            WHERE id = :job_id AND lease_owner = :token AND status = 'RUNNING'
            """
        ),
        {"job_id": job_id, "token": token},
    )
    return rows_changed(result) > 0


def finish(session: Session, job_id: int, token: str) -> str | None:
    """End the job COMPLETED or COMPLETED_WITH_ERRORS; None if the lease was lost.

    An error an earlier attempt left (`release`) is forgotten: the job did not fail."""
    row = session.execute(
        text(
            """
            UPDATE upload_jobs SET
                status = CASE WHEN rows_failed > 0
                    THEN 'COMPLETED_WITH_ERRORS' ELSE 'COMPLETED' END,
                bytes_processed = file_size, finished_at = clock_timestamp(),
                updated_at = clock_timestamp(), failure_reason = NULL,
                lease_owner = NULL, lease_expires_at = NULL
            WHERE id = :job_id AND lease_owner = :token AND status = 'RUNNING'
            RETURNING status
            """
        ),
        {"job_id": job_id, "token": token},
    ).one_or_none()
    if row is None:
        return None
    discard_dry_run(session, job_id)
    return str(row.status)


def release(session: Session, job_id: int, token: str, error: str) -> None:
    """After an unexpected error: let the lease lapse now and keep the error for the record.

    The sweeper then counts the loss (`sweep`) and the job is retried; should the job fail
    for good, its reason ends with this error."""
    session.execute(
        text(
            """
            UPDATE upload_jobs SET lease_expires_at = clock_timestamp(),
                failure_reason = :error, updated_at = clock_timestamp()
            WHERE id = :job_id AND lease_owner = :token AND status = 'RUNNING'
            """
        ),
        {"job_id": job_id, "token": token, "error": error[:2000]},
    )


def fail(session: Session, job_id: int, reason: str, token: str | None = None) -> bool:
    """End the job FAILED (the job as a whole: never for bad rows)."""
    result = session.execute(
        text(
            """
            UPDATE upload_jobs SET status = 'FAILED', failure_reason = :reason,
                finished_at = clock_timestamp(), updated_at = clock_timestamp(),
                lease_owner = NULL, lease_expires_at = NULL, retry_after = NULL
            WHERE id = :job_id AND status IN ('QUEUED', 'RUNNING')
              AND (CAST(:token AS text) IS NULL OR lease_owner = :token)
            """
        ),
        {"job_id": job_id, "reason": reason, "token": token},
    )
    failed = rows_changed(result) > 0
    if failed:
        discard_dry_run(session, job_id)
    return failed
