"""Job state: the lease (claim, hand-off, finish), cancel, the sweeper, the job document."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

import psycopg
from psycopg.sql import SQL, Composed, Literal
from sqlalchemy import select, text
from sqlalchemy.orm import Session, object_session

from core import cursors, keys
from core.codes import error_name
from core.db import get_poll_engine, rows_changed, transaction
from core.errors import DomainError, ErrorKind, not_found
from core.models import JobRowError, UploadJob, WebhookDelivery
from core.models.jobs import TERMINAL_STATUSES
from core.settings import get_settings

TERMINAL = TERMINAL_STATUSES


def epoch_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- reading -------------------------------------------------------------------------------


def get_job(session: Session, org_id: int, job_id: int) -> UploadJob:
    job = session.execute(
        select(UploadJob).where(UploadJob.id == job_id, UploadJob.org_id == org_id)
    ).scalar_one_or_none()
    if job is None:
        raise not_found("job")
    return job


_JOB_COLUMNS = tuple(column.name for column in UploadJob.__table__.columns)
_DELIVERY_COLUMNS = ("url", "state", "attempts", "next_attempt_at")
# The presented key, found by its prefix and its hash, setting the transaction's org to its
# own (only a key that is the presented one can set it), then the job under that org's
# row-level security, with its webhook delivery.
_POLL = SQL(
    "SELECT key_id, org_id, key_hash, last_used_at,"
    " set_config('app.org_id', org_id::text, true)"
    " FROM br_key_lookup({prefix}) WHERE key_hash = {digest} LIMIT 1;"
    " SELECT "
    + ", ".join(f"j.{name}" for name in _JOB_COLUMNS)
    + ", "
    + ", ".join(f"d.{name}" for name in _DELIVERY_COLUMNS)
    + " FROM upload_jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id WHERE j.id = {job}"
)


@dataclass(frozen=True)
class Poll:
    key: keys.KeyMatch | None  # None: no such key (the rest is None too)
    job: UploadJob | None  # None: not a job of the key's org
    delivery: WebhookDelivery | None


def poll(key: str, job_id: int) -> Poll:
    """The key and the job for GET /v1/jobs/{id}, in one message to Postgres.

    That route is what clients call over and over while a job runs, on a machine the job
    keeps busy, where every socket call and every wake-up waits for a core: a transaction of
    a key look-up, the org's setting, the job and its delivery made six round trips, a
    pipeline of them after the pool's ping two (bench/README.md). Here the two statements
    go as one simple-protocol query, on a connection of the poll pool (autocommit, no ping),
    which Postgres runs as one transaction and answers in one go: the key look-up sets the
    org of the key it finds (for that transaction only), and the job is read under that
    org's row-level security, as every request's reads are. The key is found by its hash
    in SQL (a SHA-256 digest tells nothing of the key), and checked again in constant time
    (`keys.match`). The simple protocol takes no parameters: the values go as literals,
    quoted by psycopg.
    """
    query = _POLL.format(
        prefix=Literal(keys.prefix_of(key)), digest=Literal(keys.hash_key(key)), job=Literal(job_id)
    )
    match, row = _poll_rows(query, key)
    if match is None:
        return Poll(None, None, None)
    if row is None:
        return Poll(match, None, None)
    width = len(_JOB_COLUMNS)
    job = UploadJob(**dict(zip(_JOB_COLUMNS, row[:width], strict=True)))
    delivery = None
    if row[width] is not None:  # the delivery's url is never null
        delivery = WebhookDelivery(
            job_id=job.id,
            org_id=job.org_id,
            **dict(zip(_DELIVERY_COLUMNS, row[width:], strict=True)),
        )
    return Poll(match, job, delivery)


def _poll_rows(query: Composed, key: str) -> tuple[keys.KeyMatch | None, Any]:
    """The key's match and the job's row. When the server has dropped the connection (a
    restart, an idle timeout), the pool's connections are thrown away, as after a restart
    all of them are dead, and the query asked again, once, on a new one."""
    for attempt in (1, 2):
        raw = get_poll_engine().raw_connection()
        try:
            conn = cast("psycopg.Connection[Any]", raw.driver_connection)
            try:
                cursor = conn.execute(query)
            except psycopg.OperationalError:
                if attempt == 2 or not conn.broken:
                    raise
                raw.invalidate()
                get_poll_engine().dispose()
                continue
            match = keys.match(cursor.fetchall(), key)
            cursor.nextset()
            return match, cursor.fetchone()
        finally:
            raw.close()
    raise AssertionError("unreachable: the second attempt returns or raises")


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


def job_document(
    job: UploadJob,
    now: datetime | None = None,
    *,
    callback: bool = True,
    delivery: WebhookDelivery | Found | None = Found.LOOK_UP,
) -> dict[str, Any]:
    """The job as GET /v1/jobs/{id} shows it (the webhook's body leaves `callback` out)."""
    now = now or datetime.now(UTC)
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
        elif job.status in TERMINAL:
            eta = 0.0
    base = f"/v1/jobs/{job.id}"
    document: dict[str, Any] = {
        "jobId": job.id,
        "couponSeriesId": job.series_id,
        "status": job.status,
        "fileName": job.file_name,
        "fileSize": job.file_size,
        "details": job.details,
        "customerIdentifier": job.customer_identifier,
        "couponIdentifier": job.coupon_identifier,
        "dryRun": job.dry_run,
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
        "progress": {
            "bytesProcessed": done,
            "bytesTotal": total,
            "percent": percent,
            "rowsProcessed": job.rows_processed,
            "rowsSucceeded": job.rows_succeeded,
            "rowsFailed": job.rows_failed,
            "rowsPerSecond": rate,
            "etaSeconds": eta,
        },
        "errorSummary": [
            {"code": int(code), "name": error_name(int(code)), "count": count}
            for code, count in sorted(job.error_counts.items(), key=lambda kv: int(kv[0]))
        ],
        "failureReason": job.failure_reason,
        "links": {"self": base, "errors": f"{base}/errors", "errorsCsv": f"{base}/errors.csv"},
    }
    if callback:
        document["callback"] = callback_document(job, delivery)
    return document


def capillary_status(job: UploadJob) -> dict[str, Any]:
    """One entry of Capillary's redeemUploadJobStatuses."""
    return {
        "jobId": job.id,
        "uploadRedeemedCouponStatus": job.status,
        "createdOn": str(epoch_ms(job.created_at)),
        "updatedOn": str(epoch_ms(job.updated_at)),
        "uploadedFileName": job.file_name,
        "errorFileUrl": f"/v1/jobs/{job.id}/errors.csv",
        "totalUploadedCount": job.rows_processed,
        "actualRowCount": job.rows_succeeded,
        "errorCount": job.rows_failed,
    }


# --- cancel --------------------------------------------------------------------------------


def request_cancel(session: Session, org_id: int, job_id: int) -> UploadJob:
    """A job nobody is working on ends at once (queued, between slices, or waiting for its
    retry after a loss, which may be minutes away); one a worker holds, at its next chunk
    boundary."""
    job = session.execute(
        select(UploadJob)
        .where(UploadJob.id == job_id, UploadJob.org_id == org_id)
        .with_for_update()
    ).scalar_one_or_none()
    if job is None:
        raise not_found("job")
    if job.status in TERMINAL:
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


# --- the lease -----------------------------------------------------------------------------


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


def org_of(session: Session, job_id: int) -> int | None:
    """The org a job belongs to: all a worker knows from its message is the job id."""
    org_id = session.execute(text("SELECT br_job_org(:id)"), {"id": job_id}).scalar_one()
    return None if org_id is None else int(org_id)


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
    session.execute(
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
            """
        ),
        {"job_id": job_id},
    )
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


def discard_dry_run(session: Session, job_id: int) -> None:
    """Forget what a dry run would have redeemed (nothing, for a real job)."""
    session.execute(text("DELETE FROM dry_run_redemptions WHERE job_id = :id"), {"id": job_id})


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


# --- the sweeper ---------------------------------------------------------------------------


def end_frozen_copies(session: Session) -> int:
    """End the service's sessions stuck in a COPY into a chunk's staging for over a lease.

    A chunk copies its row errors in while it holds its job row locked; a worker frozen half-
    way through (stopped) leaves its session waiting for the rest of the data, which is no
    idle transaction to Postgres: only `statement_timeout` would end it, minutes later, and
    the sweeper passes over the locked job meanwhile. These copies stream rows the chunk has
    ready, in well under a second; one that waited on its client a lease is frozen. A role
    may end its own sessions; those of other roles are not looked at.
    """
    ended = session.execute(
        text(
            """
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 1000)) FROM pg_stat_activity
            WHERE datname = current_database() AND usename = current_user
              AND pid <> pg_backend_pid()
              AND state = 'active' AND wait_event = 'ClientRead'
              AND query LIKE 'COPY br\\_%'
              AND state_change < clock_timestamp() - make_interval(secs => :lease)
            """
        ),
        {"lease": get_settings().lease_seconds},
    ).scalar_one()
    return int(ended)


# Between losses at the same record the next attempt waits this many leases, doubling, up to
# the cap: a job that cannot get past a record stops hammering the database, and a failover
# that took every job down once costs none of them a wait.
RETRY_BACKOFF_LEASES = 1
RETRY_BACKOFF_MAX_LEASES = 16


def sweep(session: Session, *, stale_seconds: float | None = None) -> list[int]:
    """Jobs to enqueue: a retry come due, or queued or handed on and untaken for a while.

    Lapsed leases are judged here first: each is a loss, which counts toward the attempts'
    limit only when the job committed no chunk since its previous loss; a job lost that often
    at the same record fails, with its reason (migration 0009). A job whose row is locked is
    left alone: its holder is inside a chunk. This looks across orgs, so it runs as a
    function of the owner's (row-level security hides the rest). `stale_seconds` overrides
    how long an untaken message is trusted (0: enqueue every job that waits, as after Redis
    lost its messages).
    """
    settings = get_settings()
    lease = float(settings.lease_seconds)
    # The rows it changes stay locked until the caller commits: a worker frozen before that
    # must not keep them from every other sweeper and claim.
    session.execute(
        text("SELECT set_config('idle_in_transaction_session_timeout', :idle, true)"),
        {"idle": idle_limit_ms()},
    )
    end_frozen_copies(session)
    rows = session.execute(
        text("SELECT br_sweep(:max_attempts, :stale, :backoff, :backoff_max) AS id"),
        {
            "max_attempts": settings.max_attempts,
            "stale": settings.queued_requeue_seconds if stale_seconds is None else stale_seconds,
            "backoff": lease * RETRY_BACKOFF_LEASES,
            "backoff_max": lease * RETRY_BACKOFF_MAX_LEASES,
        },
    ).all()
    return sorted(row.id for row in rows)
