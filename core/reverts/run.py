"""Running a revert, a unit of work per chunk: the import's redemptions, in file order, moved to
the archive, and their coupons' counters lowered, in one transaction a chunk.

It runs as an import does (core/pipeline.py claims it, beats its lease, hands it on between
slices, and the sweeper retries it): only what a chunk does differs. A chunk is the import's
next `chunk_rows` redemptions by row number from the revert's checkpoint (`next_record`, a
row number of the import's file), found by ix_redemptions_job_id_row_number. Per-customer
counts are counted from redemptions (core/probes.py), so they follow by themselves.

Progress: `rowsProcessed` = `rowsSucceeded` = the redemptions removed; `rowsFailed` 0. The
revert's `fileSize` is the import's (it names the file it undoes), and its `bytesProcessed`
the same share of it as the redemptions removed are of those the import applied (its
`rowsSucceeded`), so that `percent` and `etaSeconds` mean for a revert what they mean for an
import.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import psycopg

from core.apply import IDLE_IN_TRANSACTION_SECONDS, STATEMENT_TIMEOUT_SECONDS, LeaseLost
from core.db import get_engine
from core.jobs import lease
from core.logs import log_context
from core.settings import get_settings

log = logging.getLogger(__name__)

_SET_ORG = "SELECT set_config('app.org_id', %s, true)"
_TARGET = """
SELECT r.reverts_job_id, i.rows_succeeded
FROM upload_jobs r JOIN upload_jobs i ON i.id = r.reverts_job_id
WHERE r.id = %s
"""
# The fence of core/apply.py: the job row stays locked until the chunk commits, only the lease
# holder passes, and only at the checkpoint the chunk starts from, so that a chunk is never
# applied twice (a second delivery, a worker that lost its lease and goes on).
_FENCE = """
SELECT set_config('idle_in_transaction_session_timeout', %s, true)
FROM upload_jobs
WHERE id = %s AND lease_owner = %s AND status = 'RUNNING' AND next_record = %s
FOR UPDATE
"""
# Lock order everywhere: job row, then series (core/apply.py). The series lock keeps a racing
# import of the series out of this chunk: its limit checks read the counters and redemptions
# once this chunk has committed, or before it began, never half-way.
_LOCK_SERIES = "SELECT 1 FROM coupon_series WHERE id = %s FOR NO KEY UPDATE"
# One statement: the chunk's redemptions deleted into the archive, and their coupons' counters.
# Each part probes an index: the chunk is a range of ix_redemptions_job_id_row_number (its end
# found by walking that index `size` rows on), the counters are found by their keys (= ANY of
# an array). Joined to the chunk's ids and coupons instead, both were planned as hash joins
# over a scan of the whole table: 0.9-1.1 s a chunk of 10,000 on 1,000,000 redemptions, where
# this takes 0.2-0.3 s (EXPLAIN ANALYZE on the bench's private Postgres).
_MOVE = """
WITH moved AS (
    DELETE FROM redemptions
    WHERE job_id = %(import)s AND row_number >= %(start)s
      AND row_number < coalesce((
          SELECT row_number FROM redemptions
          WHERE job_id = %(import)s AND row_number >= %(start)s
          ORDER BY row_number OFFSET %(size)s LIMIT 1
      ), 2147483647)
    RETURNING id, org_id, series_id, coupon_id, customer_id, job_id, row_number,
        redeemed_ms, till_id, bill_id, bill_number, details, created_at
), archived AS (
    INSERT INTO reverted_redemptions (id, org_id, series_id, coupon_id, customer_id, job_id,
        row_number, redeemed_ms, till_id, bill_id, bill_number, details, created_at,
        reverted_by_job_id, reverted_at)
    SELECT id, org_id, series_id, coupon_id, customer_id, job_id, row_number, redeemed_ms,
        till_id, bill_id, bill_number, details, created_at, %(revert)s, now()
    FROM moved
    RETURNING coupon_id, row_number
), restored AS (
    UPDATE coupon_counters c SET redemption_count = c.redemption_count - d.n
    FROM (SELECT coupon_id, count(*) AS n FROM archived GROUP BY coupon_id) d
    WHERE c.coupon_id = ANY(ARRAY(SELECT coupon_id FROM archived))
      AND c.coupon_id = d.coupon_id
)
SELECT count(*), max(row_number) FROM archived
"""
_PROGRESS = """
UPDATE upload_jobs SET
    rows_processed = rows_processed + %(moved)s,
    rows_succeeded = rows_succeeded + %(moved)s,
    next_record = %(next_record)s,
    bytes_processed = CASE WHEN %(total)s > 0
        THEN least(file_size, file_size * (rows_succeeded + %(moved)s) / %(total)s) ELSE 0 END,
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s),
    updated_at = now()
WHERE id = %(job)s
"""


def is_revert(job: lease.ClaimedJob) -> bool:
    """Whether a claimed job is a revert: only reverts have no file (migration 0012's check
    `only_reverts_have_no_file` makes the two the same)."""
    return job.storage_key == ""


def run_revert(job: lease.ClaimedJob, token: str, deadline: float) -> bool:
    """Revert chunk by chunk until nothing is left (the job ends: False) or the slice's time
    is up (the lease handed on: True, enqueue it again). Raises LeaseLost."""
    settings = get_settings()
    raw = get_engine().raw_connection()
    try:
        conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        conn.rollback()
        # As a chunk of an import: a worker frozen inside one must not keep the job row locked.
        conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_SECONDS}s'")
        conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_SECONDS}s'")
        conn.commit()
        with conn.transaction():
            conn.execute(_SET_ORG, (str(job.org_id),))
            row = conn.execute(_TARGET, (job.id,)).fetchone()
        if row is None:
            raise LookupError(f"revert {job.id}: the job it reverts is gone")
        chunk = _Chunks(
            conn,
            job,
            token,
            import_id=int(row[0]),
            total=int(row[1]),
            size=settings.chunk_rows,
            lease_seconds=settings.lease_seconds,
        )
        start = job.next_record
        while True:
            with log_context(chunk=start):
                began = time.monotonic()
                moved, last = chunk.commit(start)
                log.info(
                    "revert chunk applied",
                    extra={"rows": moved, "seconds": round(time.monotonic() - began, 3)},
                )
            if moved < chunk.size:
                break  # the import has no redemption left after this chunk
            start = last + 1
            if time.monotonic() >= deadline:
                with lease.lease_transaction(job.org_id) as session:
                    if not lease.hand_off(session, job.id, token):
                        raise LeaseLost(job.id)
                return True
    finally:
        raw.close()
    with lease.lease_transaction(job.org_id) as session:
        status = lease.finish(session, job.id, token)
    if status is None:
        raise LeaseLost(job.id)
    log.info("job %s: revert of job %s %s", job.id, chunk.import_id, status)
    return False


class _Chunks:
    """The chunk transactions of one revert, on one connection."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        job: lease.ClaimedJob,
        token: str,
        *,
        import_id: int,
        total: int,
        size: int,
        lease_seconds: int,
    ) -> None:
        self.conn = conn
        self.job = job
        self.token = token
        self.import_id = import_id
        self.total = total  # the redemptions the import applied: the revert's 100 %
        self.size = size
        self.lease_seconds = lease_seconds

    def commit(self, start: int) -> tuple[int, int]:
        """Move the import's next redemptions from row `start` on, and commit: how many were
        moved, and the last one's row number (`start - 1` when none was left)."""
        conn = self.conn
        try:
            conn.execute(_SET_ORG, (str(self.job.org_id),))
            fenced = conn.execute(
                _FENCE, (str(self.lease_seconds * 1000), self.job.id, self.token, start)
            ).fetchone()
            if fenced is None:
                raise LeaseLost(self.job.id)
            if conn.execute(_LOCK_SERIES, (self.job.series_id,)).fetchone() is None:
                raise LookupError(f"coupon series {self.job.series_id} is gone")
            row = conn.execute(
                _MOVE,
                {
                    "import": self.import_id,
                    "start": start,
                    "size": self.size,
                    "revert": self.job.id,
                },
            ).fetchone()
            assert row is not None  # an aggregate always has its row
            moved, last = int(row[0]), (start - 1 if row[1] is None else int(row[1]))
            if moved:
                conn.execute(
                    _PROGRESS,
                    {
                        "moved": moved,
                        "next_record": last + 1,
                        "total": self.total,
                        "lease": self.lease_seconds,
                        "job": self.job.id,
                    },
                )
            conn.commit()
        except BaseException:
            # A connection that is gone rolled back as it went.
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise
        return moved, last
