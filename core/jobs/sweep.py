"""The sweeper: lapsed leases counted as losses, frozen COPYs ended, the jobs to enqueue again."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.jobs.lease import idle_limit_ms
from core.settings import get_settings


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
