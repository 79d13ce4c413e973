"""Applying one chunk: COPY into staging, set-based lookups, the ordered checks, one commit.

Everything a chunk changes (redemptions, coupon counters, row errors, progress and the
checkpoint) commits in one transaction, and only while the job's lease is still ours. The
checks themselves are core/rules.py's; this module holds the database work, each statement
named below.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.guard import Guard
from core.probes import coupon_counts_sql, customer_counts_sql, probe_sql
from core.rows import CUSTOMER_COLUMNS, Candidate, Failure, RowChecker
from core.rules import (
    Accepted,
    Found,
    SeriesRules,
    Survivor,
    coupon_of,
    customer_of,
    limit_checks,
    static_checks,
)

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the job over, or the job's checkpoint is not where this worker's
    chunk starts: this one must not commit anything more."""


@dataclass
class ChunkOutcome:
    succeeded: int = 0
    failed: int = 0
    cancelled: bool = False
    error_counts: Counter[int] = field(default_factory=Counter)
    # The guard's failureReason when it stops the job at this chunk (core/guard.py); with
    # `refused`, nothing of the chunk was kept (the first chunk), else the chunk committed.
    stopped: str | None = None
    refused: bool = False


@dataclass
class PreparedChunk:
    """A staged chunk with the rows that passed the static checks, its transaction open."""

    conn: psycopg.Connection[Any]
    processed: int  # data records in the chunk
    failures: list[Failure]  # the rows that failed the row checks (801 to 729), in any order
    candidates: list[Candidate]  # the rest, staged, in file order
    resolved: Resolved
    first_record: int  # the job's checkpoint this chunk starts from (its next_record)
    end_offset: int
    next_record: int


@dataclass
class Resolved:
    """The candidates' customers and coupons, and the static checks' verdicts on them."""

    deletions: int | None  # the series' reference_deletions before the look-ups (migration 0007)
    failures: list[Failure] = field(default_factory=list)  # 701 to 735
    survivors: list[Survivor] = field(default_factory=list)  # the rest, in file order


_LOAD_SERIES = """
SELECT id, max_redemptions_per_coupon, same_user_multiple_redeem,
    max_redemptions_per_customer,
    (extract(epoch FROM valid_from) * 1000)::bigint,
    (extract(epoch FROM valid_till) * 1000)::bigint,
    any_user, allowed_till_ids
FROM coupon_series WHERE id = %s
"""


def load_series(conn: psycopg.Connection[Any], series_id: int) -> SeriesRules:
    row = conn.execute(_LOAD_SERIES, (series_id,)).fetchone()
    if row is None:
        raise LookupError(f"coupon series {series_id} is gone")
    return SeriesRules(
        id=row[0],
        max_per_coupon=row[1],
        same_user_multiple_redeem=row[2],
        max_per_customer=row[3],
        valid_from_ms=row[4],
        valid_till_ms=row[5],
        any_user=row[6],
        allowed_tills=None if row[7] is None else frozenset(row[7]),
    )


# Staging lives per connection; ON COMMIT DELETE ROWS empties it after every chunk.
# Temp tables also sidestep row-level security, which refuses COPY into a policy-bearing table.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS br_stage (
    row_number bigint PRIMARY KEY,
    user_id bigint,
    customer_key text,
    coupon_id bigint,
    coupon_code text,
    redeemed_ms bigint NOT NULL,
    till_id text NOT NULL,
    bill_id text NOT NULL,
    bill_number text NOT NULL,
    details text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS br_err (
    row_number bigint NOT NULL,
    code smallint NOT NULL,
    message text NOT NULL,
    cells text[] NOT NULL
) ON COMMIT DELETE ROWS;
"""
_QUIET = "SET LOCAL client_min_messages = warning"
_SET_ORG = "SELECT set_config('app.org_id', %s, true)"
_COPY_STAGE = (
    "COPY br_stage (row_number, user_id, customer_key, coupon_id, coupon_code,"
    " redeemed_ms, till_id, bill_id, bill_number, details) FROM STDIN"
)
_DELETIONS = "SELECT reference_deletions FROM coupon_series WHERE id = %s"

# Fencing: the job row stays locked until this chunk commits, so nobody can take the lease
# over half-way through; and the job's checkpoint must be where the chunk starts, so a chunk
# can never be applied twice, nor after a gap. A worker frozen here (stopped) must not keep
# the row locked past its lease: the sweeper passes over locked job rows, so Postgres ends a
# session idle that long.
_FENCE = """
SELECT cancel_requested, set_config('idle_in_transaction_session_timeout', %s, true),
    rows_processed
FROM upload_jobs
WHERE id = %s AND lease_owner = %s AND status = 'RUNNING' AND next_record = %s
FOR UPDATE
"""
_CANCEL = """
UPDATE upload_jobs SET status = 'CANCELLED', finished_at = now(),
    updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
WHERE id = %s
"""
_DISCARD_DRY_RUN = "DELETE FROM dry_run_redemptions WHERE job_id = %s"
_LOCK_SERIES = (
    "SELECT reference_deletions, set_config('app.references_checked', 'on', true)"
    " FROM coupon_series WHERE id = %s FOR NO KEY UPDATE"
)
_COPY_ERRORS = "COPY br_err (row_number, code, message, cells) FROM STDIN"
_INSERT_ERRORS = """
INSERT INTO job_row_errors (job_id, row_number, org_id, code, message, cells)
SELECT %(job)s, row_number, %(org)s, code, message, cells FROM br_err
"""
_PROGRESS = """
UPDATE upload_jobs SET
    rows_processed = rows_processed + %(processed)s,
    rows_succeeded = rows_succeeded + %(succeeded)s,
    rows_failed = rows_failed + %(failed)s,
    error_counts = (
        SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb) FROM (
            SELECT key, sum(value::bigint) AS total FROM (
                SELECT * FROM jsonb_each_text(error_counts)
                UNION ALL
                SELECT * FROM jsonb_each_text(%(counts)s::jsonb)
            ) parts GROUP BY key
        ) merged
    ),
    bytes_processed = %(offset)s,
    next_record = %(next_record)s,
    -- From the moment of writing: the transaction began at the prepare step.
    lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s),
    updated_at = now()
WHERE id = %(job)s
RETURNING rows_processed, rows_succeeded, rows_failed, error_counts
"""
# Only the decisions travel back: the rows themselves are staged already.
_ACCEPTED_ROWS = """
    FROM unnest(%(rows)s::bigint[], %(coupons)s::bigint[], %(customers)s::bigint[])
        AS a(row_number, coupon_id, customer_id)
    JOIN br_stage s ON s.row_number = a.row_number"""
_INSERT_DRY_RUN = f"""
INSERT INTO dry_run_redemptions (job_id, row_number, org_id, coupon_id,
    customer_id, redeemed_ms, till_id, bill_id, bill_number)
SELECT %(job)s, s.row_number, %(org)s, a.coupon_id, a.customer_id,
    s.redeemed_ms, s.till_id, s.bill_id, s.bill_number{_ACCEPTED_ROWS}
"""
# One statement: the redemptions and their coupons' counters.
_INSERT_REDEMPTIONS = f"""
WITH inserted AS (
    INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id,
        job_id, row_number, redeemed_ms, till_id, bill_id, bill_number,
        details)
    SELECT %(org)s, %(series)s, a.coupon_id, a.customer_id, %(job)s,
        s.row_number, s.redeemed_ms, s.till_id, s.bill_id, s.bill_number,
        s.details{_ACCEPTED_ROWS}
    ORDER BY s.row_number
    RETURNING coupon_id
)
INSERT INTO coupon_counters AS c (coupon_id, org_id, redemption_count)
SELECT coupon_id, %(org)s, count(*) FROM inserted GROUP BY coupon_id
ON CONFLICT (coupon_id)
DO UPDATE SET redemption_count = c.redemption_count + excluded.redemption_count
"""


@cache
def resolve_sql(customer_column: str | None) -> str:
    """Each staged row with its customer and its coupon (and the coupon's own rules).

    Customer and coupon are resolved by LATERAL probes of their unique indexes: a non-empty
    userId / couponId decides alone, else the job's identifier column (`customer_column`,
    None for USER_ID jobs). Only columns the indexes carry are read, so the probes by mobile,
    email, external id, userId and coupon code are index-only (migration 0007); a coupon found
    by couponId visits the heap. The column is one of CUSTOMER_COLUMNS', never input.
    """
    by_key = ""
    if customer_column is not None:
        by_key = f"""
                UNION ALL
                SELECT c.id FROM customers c
                WHERE s.user_id IS NULL AND c.org_id = %(org)s
                  AND c.{customer_column} = s.customer_key"""
    return f"""
        SELECT s.row_number, cu.id, k.id, k.issued_to_customer_id,
            (extract(epoch FROM k.expires_at) * 1000)::bigint, k.revoked_at IS NOT NULL
        FROM br_stage s
        LEFT JOIN LATERAL (
            SELECT c.id FROM customers c
            WHERE s.user_id IS NOT NULL AND c.id = s.user_id AND c.org_id = %(org)s{by_key}
        ) cu ON true
        LEFT JOIN LATERAL (
            SELECT k.id, k.issued_to_customer_id, k.expires_at, k.revoked_at FROM coupons k
            WHERE s.coupon_id IS NOT NULL AND k.id = s.coupon_id
              AND k.series_id = %(series)s
            UNION ALL
            SELECT k.id, k.issued_to_customer_id, k.expires_at, k.revoked_at FROM coupons k
            WHERE s.coupon_id IS NULL AND k.series_id = %(series)s AND k.code = s.coupon_code
        ) k ON true
    """


# What bounds a slice in time under the solo pool, where Celery's time limits do nothing: a
# chunk's handful of statements, each at most this long (a 10,000-row statement takes well
# under a second, a wait for another job's chunk of the series a second or two), stays far
# under the broker's visibility timeout (worker/app.py).
STATEMENT_TIMEOUT_SECONDS = 120
IDLE_IN_TRANSACTION_SECONDS = 60


def prepare_connection(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute(_QUIET)
        conn.execute(_STAGING)
    # A worker frozen inside a chunk (stopped, partitioned) must not keep the job row locked,
    # and with it the job, for ever: Postgres ends such a session and the lease can lapse.
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_SECONDS}s'")
    conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_SECONDS}s'")
    conn.commit()


class ChunkApplier:
    """Applies the chunks of one job, in two phases a chunk.

    `prepare` stages a chunk and resolves its customers and coupons: nothing it reads changes
    with the job's earlier chunks, so it may run on a second connection while the previous
    chunk commits. `commit` then takes the locks, reads what earlier chunks and racing jobs
    may have changed (counters, earlier redemptions), decides every row and commits.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        job_id: int,
        org_id: int,
        token: str,
        series: SeriesRules,
        checker: RowChecker,
        customer_key: str,
        lease_seconds: int,
        dry_run: bool = False,
        guard: Guard | None = None,
    ) -> None:
        self.conn = conn
        self.guard = guard
        # A dry run checks every row as a real run would, against the real redemptions and
        # its own would-be ones (dry_run_redemptions), and changes neither redemptions nor
        # counters.
        self.dry_run = dry_run
        self.job_id = job_id
        self.org_id = org_id
        self.token = token
        self.series = series
        self.checker = checker
        self.lease_seconds = lease_seconds
        # The customers column matched when a row has no userId (USER_ID jobs never need it).
        self.customer_key = customer_key
        self._resolve_sql = resolve_sql(CUSTOMER_COLUMNS.get(customer_key))
        self._limit_reads = _LimitReads(series, dry_run=dry_run)

    def prepare(
        self,
        conn: psycopg.Connection[Any],
        items: list[Candidate | Failure],
        *,
        first_record: int,
        end_offset: int,
        next_record: int,
    ) -> PreparedChunk:
        """Stage a chunk, resolve its customers and coupons, and run the checks that earlier
        rows cannot change (701 to 735); takes no lock.

        The transaction stays open on `conn` (the staged rows live in it) until `commit` or
        `abandon`. A coupon revoked or a customer added between the two phases is seen as it
        was here, as if the chunk had run just before that change.
        """
        candidates = [item for item in items if isinstance(item, Candidate)]
        failures = [item for item in items if isinstance(item, Failure)]
        resolved = Resolved(deletions=None)
        try:
            conn.execute(_SET_ORG, (str(self.org_id),))
            if candidates:
                _stage(conn, candidates)
                resolved = self._resolve(conn, candidates)
        except BaseException:
            _rollback(conn)
            raise
        return PreparedChunk(
            conn, len(items), failures, candidates, resolved, first_record, end_offset, next_record
        )

    def _resolve(self, conn: psycopg.Connection[Any], candidates: list[Candidate]) -> Resolved:
        """Look the staged candidates' customers and coupons up, and run the static checks.

        The series' count of reference deletions is read first: should a coupon or customer
        be deleted after it, the count has moved by the time the chunk inserts (`_commit`).
        """
        row = conn.execute(_DELETIONS, (self.series.id,)).fetchone()
        if row is None:
            raise LookupError(f"coupon series {self.series.id} is gone")
        found = _look_up(conn, self._resolve_sql, self.org_id, self.series.id)
        failures, survivors = static_checks(
            self.series, self.checker.failure_of, self.customer_key, candidates, found
        )
        return Resolved(int(row[0]), failures, survivors)

    def commit(self, prepared: PreparedChunk) -> ChunkOutcome:
        """Decide and apply a prepared chunk and commit it, or raise LeaseLost; a pending
        cancel ends the job instead and applies nothing of the chunk."""
        conn = prepared.conn
        try:
            outcome = self._commit(prepared)
            conn.commit()
        except BaseException:
            _rollback(conn)
            raise
        return outcome

    def abandon(self, prepared: PreparedChunk) -> None:
        """Give up a prepared chunk: nothing of it is kept."""
        _rollback(prepared.conn)

    def _commit(self, prepared: PreparedChunk) -> ChunkOutcome:
        conn = prepared.conn
        row = conn.execute(
            _FENCE,
            (str(self.lease_seconds * 1000), self.job_id, self.token, prepared.first_record),
        ).fetchone()
        if row is None:
            raise LeaseLost(self.job_id)
        if row[0]:
            conn.execute(_CANCEL, (self.job_id,))
            conn.execute(_DISCARD_DRY_RUN, (self.job_id,))
            return ChunkOutcome(cancelled=True)

        first_chunk = row[2] == 0
        failures = list(prepared.failures)
        accepted: list[Accepted] = []
        resolved = prepared.resolved
        if prepared.candidates:
            resolved = self._lock_series(conn, prepared)
            failures.extend(resolved.failures)
        if resolved.survivors:
            late, accepted = self._decide(conn, resolved.survivors)
            failures.extend(late)
        guard = self.guard
        if first_chunk and guard is not None and guard.trips(len(failures), prepared.processed):
            # Every row is decided, nothing is written yet: the job ends with none of the
            # file applied, so a wrong mapping leaves nothing to undo.
            first = min(failures, key=lambda f: f.row_number)
            reason = guard.refused_first_chunk(
                len(failures),
                prepared.processed,
                Counter(int(f.code) for f in failures),
                f"row {first.row_number}: {int(first.code)} {first.message}",
            )
            return ChunkOutcome(stopped=reason, refused=True)
        if accepted:
            self._insert(conn, accepted)
        outcome = ChunkOutcome(
            succeeded=len(accepted),
            failed=len(failures),
            error_counts=Counter(int(f.code) for f in failures),
        )
        if failures:
            with conn.cursor() as cur:
                with cur.copy(_COPY_ERRORS) as copy:
                    for f in failures:
                        copy.write_row((f.row_number, int(f.code), f.message, f.cells))
                cur.execute(_INSERT_ERRORS, {"job": self.job_id, "org": self.org_id})
        totals = conn.execute(
            _PROGRESS,
            {
                "processed": prepared.processed,
                "succeeded": outcome.succeeded,
                "failed": outcome.failed,
                "counts": Jsonb({str(k): v for k, v in outcome.error_counts.items()}),
                "offset": prepared.end_offset,
                "next_record": prepared.next_record,
                "lease": self.lease_seconds,
                "job": self.job_id,
            },
        ).fetchone()
        if guard is not None and totals is not None:
            processed, succeeded, failed, counts = totals
            if guard.trips(failed, processed):
                # This chunk is applied (it commits with the job's totals that tripped it):
                # the job stops at this boundary, and its reason says what stays applied.
                outcome.stopped = guard.stopped_later(
                    self.job_id,
                    failed=failed,
                    processed=processed,
                    succeeded=succeeded,
                    last_row=prepared.next_record - 1,
                    counts=counts,
                )
        return outcome

    def _lock_series(self, conn: psycopg.Connection[Any], prepared: PreparedChunk) -> Resolved:
        """Take the series lock, and the chunk's look-ups again if a delete came in between.

        Lock order everywhere: job row, then series. One chunk of a series at a time: a row
        lock on the series, held to the commit, keeps racing jobs of the series (the only ones
        that can touch its coupons, or its customers' series counts) out of each other's
        chunks. It is one row lock a chunk, where locking each coupon cost ~100 ms a chunk of
        10,000 rows; NO KEY UPDATE lets the foreign-key checks of new jobs (KEY SHARE) through.
        The reads after it come in new statements, so they see all that racing jobs, and this
        job's previous chunk, committed.

        Deletes of coupons and customers count themselves on the series under the same lock
        (migration 0007). With the count unmoved since `prepare`, every coupon and customer
        the chunk found still exists until it commits, and the transaction says so to the
        redemptions' reference check (`app.references_checked`), which it then skips.
        """
        row = conn.execute(_LOCK_SERIES, (self.series.id,)).fetchone()
        if row is None:
            raise LookupError(f"coupon series {self.series.id} is gone")
        if row[0] == prepared.resolved.deletions:
            return prepared.resolved
        log.info("chunk: a coupon or customer was deleted since its look-ups; looking again")
        return self._resolve(conn, prepared.candidates)

    def _decide(
        self, conn: psycopg.Connection[Any], survivors: list[Survivor]
    ) -> tuple[list[Failure], list[Accepted]]:
        """The limit checks on what earlier rows left (under the series lock, `_lock_series`)."""
        with conn.cursor() as cur:
            counts, probes, customer_counts = self._limit_reads.read(cur, survivors, self.job_id)
        return limit_checks(
            self.series, self.checker.failure_of, survivors, counts, probes, customer_counts
        )

    def _insert(self, conn: psycopg.Connection[Any], accepted: list[Accepted]) -> None:
        """The accepted rows' redemptions (or would-be ones) and their coupons' counters."""
        params = {
            "org": self.org_id,
            "series": self.series.id,
            "job": self.job_id,
            "rows": _bigints(row for row, _, _ in accepted),
            "coupons": _bigints(coupon for _, coupon, _ in accepted),
            "customers": _bigints(customer for _, _, customer in accepted),
        }
        conn.execute(_INSERT_DRY_RUN if self.dry_run else _INSERT_REDEMPTIONS, params)


class _LimitReads:
    """What the limit checks read of earlier redemptions: only the reads the series' rules
    and the kind of run need (core/probes.py)."""

    def __init__(self, series: SeriesRules, *, dry_run: bool) -> None:
        self.series = series
        self._coupon_counts_sql = coupon_counts_sql(dry_run=dry_run)
        self._customer_counts_sql = customer_counts_sql(dry_run=dry_run)
        self._probe_sql = probe_sql(
            same_customer=not series.same_user_multiple_redeem, dry_run=dry_run
        )

    def read(
        self, cur: psycopg.Cursor[Any], survivors: list[Survivor], job_id: int | None
    ) -> tuple[dict[int, int], dict[int, tuple[bool, bool]], dict[int, int]]:
        """The survivors' coupons' redemptions so far, the probes of the rows of coupons
        redeemed before, and (when the series limits them) the customers' redemptions."""
        cur.execute(
            self._coupon_counts_sql,
            {"coupons": _bigints(set(map(coupon_of, survivors))), "job": job_id},
        )
        counts: dict[int, int] = dict(cur.fetchall())
        # A coupon never redeemed (most of a bulk load) can have neither a duplicate nor
        # an earlier redemption by this customer: only the others are probed.
        probes: dict[int, tuple[bool, bool]] = {}
        redeemed = [s for s in survivors if s.coupon_id in counts]
        if redeemed:
            cur.execute(
                self._probe_sql,
                {
                    "job": job_id,
                    "rows": _bigints(s.candidate.row_number for s in redeemed),
                    "coupons": _bigints(s.coupon_id for s in redeemed),
                    "customers": _bigints(s.customer_id for s in redeemed),
                },
            )
            probes = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        customer_counts: dict[int, int] = {}
        if self.series.max_per_customer is not None:
            cur.execute(
                self._customer_counts_sql,
                {
                    "series": self.series.id,
                    "customers": _bigints(set(map(customer_of, survivors))),
                    "job": job_id,
                },
            )
            customer_counts = dict(cur.fetchall())
        return counts, probes, customer_counts


def judge_rows(
    conn: psycopg.Connection[Any],
    *,
    org_id: int,
    series_id: int,
    checker: RowChecker,
    items: list[Candidate | Failure],
) -> dict[int, Failure]:
    """What a real run would say of `items` now, nothing kept: each failing row's failure by
    its row number (the others would apply).

    The preview's entry point (core/uploads/preview.py): the chunk's staging, look-ups,
    checks and limit reads in one transaction of `conn` that is rolled back. It takes no
    lock, so it never waits on a running job of the series, and sees the limits as they
    were last committed; the staged rows go with the rollback, and once they are staged the
    transaction is read-only, so that nothing else can be written by mistake.
    """
    failures = [item for item in items if isinstance(item, Failure)]
    candidates = [item for item in items if isinstance(item, Candidate)]
    customer_key = checker.mapping.customer.key
    conn.rollback()
    try:
        conn.execute(_QUIET)
        conn.execute(_STAGING)
        conn.execute(_SET_ORG, (str(org_id),))
        series = load_series(conn, series_id)
        if candidates:
            _stage(conn, candidates)
            conn.execute("SET LOCAL transaction_read_only = on")
            sql = resolve_sql(CUSTOMER_COLUMNS.get(customer_key))
            found = _look_up(conn, sql, org_id, series.id)
            fail = checker.failure_of
            early, survivors = static_checks(series, fail, customer_key, candidates, found)
            failures.extend(early)
            if survivors:
                with conn.cursor() as cur:
                    reads = _LimitReads(series, dry_run=False).read(cur, survivors, None)
                late, _ = limit_checks(series, fail, survivors, *reads)
                failures.extend(late)
    finally:
        _rollback(conn)
    return {failure.row_number: failure for failure in failures}


def _stage(conn: psycopg.Connection[Any], candidates: list[Candidate]) -> None:
    with conn.cursor() as cur, cur.copy(_COPY_STAGE) as copy:
        for c in candidates:
            copy.write_row(
                (
                    c.row_number,
                    c.user_id,
                    c.customer_key,
                    c.coupon_id,
                    c.coupon_code,
                    c.redeemed_ms,
                    c.till_id,
                    c.bill_id,
                    c.bill_number,
                    c.details,
                )
            )


def _look_up(
    conn: psycopg.Connection[Any], sql: str, org_id: int, series_id: int
) -> dict[int, Found]:
    """The staged rows' customers and coupons (`resolve_sql`), by row number."""
    return {found[0]: found for found in conn.execute(sql, {"org": org_id, "series": series_id})}


def _bigints(values: Iterable[int]) -> str:
    """A bigint[] in Postgres's text form, for a `%s::bigint[]` parameter.

    psycopg's list dumper handles each element in Python: the profile of a million-row job
    put a quarter of the main thread's CPU in it. One join of the decimal strings costs a
    fraction of that; the values are ints, so nothing needs quoting.
    """
    return "{" + ",".join(map(str, values)) + "}"


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """Roll back, unless the connection is already gone (closing it rolls back anyway)."""
    with contextlib.suppress(psycopg.Error):
        conn.rollback()
