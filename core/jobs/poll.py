"""GET /v1/jobs/{id}'s fast path: the presented key and the job in one message to Postgres."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg.sql import SQL, Composed, Literal

from core import keys
from core.db import get_poll_engine
from core.models import UploadJob, WebhookDelivery

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
    # The revert that undoes the job, if one has not failed (at most one: migration 0012).
    + ", (SELECT r.id FROM upload_jobs r WHERE r.reverts_job_id = j.id AND r.status <> 'FAILED')"
    + " FROM upload_jobs j LEFT JOIN webhook_deliveries d ON d.job_id = j.id WHERE j.id = {job}"
)


@dataclass(frozen=True)
class Poll:
    key: keys.KeyMatch | None  # None: no such key (the rest is None too)
    job: UploadJob | None  # None: not a job of the key's org
    delivery: WebhookDelivery | None
    reverted_by: int | None = None  # the job's revert that has not failed


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
            **dict(zip(_DELIVERY_COLUMNS, row[width:-1], strict=True)),
        )
    return Poll(match, job, delivery, None if row[-1] is None else int(row[-1]))


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
