"""Applying one chunk: COPY into staging, set-based lookups, the ordered checks, one commit.

Everything a chunk changes (redemptions, coupon counters, row errors, progress and the
checkpoint) commits in one transaction, and only while the job's lease is still ours.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.codes import RowError
from core.probes import coupon_counts_sql, customer_counts_sql, probe_sql
from core.rows import CUSTOMER_COLUMNS, Candidate, Failure, RowChecker

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the job over, or the job's checkpoint is not where this worker's
    chunk starts: this one must not commit anything more."""


@dataclass(frozen=True)
class SeriesRules:
    id: int
    max_per_coupon: int | None
    same_user_multiple_redeem: bool
    max_per_customer: int | None
    valid_from_ms: int | None
    valid_till_ms: int | None
    any_user: bool
    allowed_tills: frozenset[str] | None


@dataclass
class ChunkOutcome:
    succeeded: int = 0
    failed: int = 0
    cancelled: bool = False
    error_counts: Counter[int] = field(default_factory=Counter)


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


@dataclass(frozen=True, slots=True)
class Survivor:
    """A row past every check that earlier rows cannot change: its customer and coupon."""

    candidate: Candidate
    customer_id: int
    coupon_id: int


def load_series(conn: psycopg.Connection[Any], series_id: int) -> SeriesRules:
    row = conn.execute(
        """
        SELECT id, max_redemptions_per_coupon, same_user_multiple_redeem,
            max_redemptions_per_customer,
            (extract(epoch FROM valid_from) * 1000)::bigint,
            (extract(epoch FROM valid_till) * 1000)::bigint,
            any_user, allowed_till_ids
        FROM coupon_series WHERE id = %s
        """,
        (series_id,),
    ).fetchone()
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


# What bounds a slice in time under the solo pool, where Celery's time limits do nothing: a
# chunk's handful of statements, each at most this long (a 10,000-row statement takes well
# under a second, a wait for another job's chunk of the series a second or two), stays far
# under the broker's visibility timeout (worker/app.py).
STATEMENT_TIMEOUT_SECONDS = 120
IDLE_IN_TRANSACTION_SECONDS = 60


def prepare_connection(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL client_min_messages = warning")
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
    ) -> None:
        self.conn = conn
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
        self.customer_column = CUSTOMER_COLUMNS.get(customer_key)
        self._resolve_sql = self._build_resolve_sql()
        # Only the reads the series' rules and the kind of run need (core/probes.py).
        self._coupon_counts_sql = coupon_counts_sql(dry_run=dry_run)
        self._customer_counts_sql = customer_counts_sql(dry_run=dry_run)
        self._probe_sql = probe_sql(
            same_customer=not series.same_user_multiple_redeem, dry_run=dry_run
        )

    def _build_resolve_sql(self) -> str:
        """Each staged row with its customer and its coupon (and the coupon's own rules).

        Customer and coupon are resolved by LATERAL probes of their unique indexes: a non-empty
        userId / couponId decides alone, else the job's identifier column. Only columns the
        indexes carry are read, so the probes by mobile, email, external id, userId and coupon
        code are index-only (migration 0007); a coupon found by couponId visits the heap.
        """
        by_key = ""
        if self.customer_column is not None:
            by_key = f"""
                    UNION ALL
                    SELECT c.id FROM customers c
                    WHERE s.user_id IS NULL AND c.org_id = %(org)s
                      AND c.{self.customer_column} = s.customer_key"""
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

    def apply(
        self,
        items: list[Candidate | Failure],
        *,
        first_record: int,
        end_offset: int,
        next_record: int,
    ) -> ChunkOutcome:
        """Prepare and commit one chunk on this applier's own connection."""
        prepared = self.prepare(
            self.conn,
            items,
            first_record=first_record,
            end_offset=end_offset,
            next_record=next_record,
        )
        return self.commit(prepared)

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
            conn.execute("SELECT set_config('app.org_id', %s, true)", (str(self.org_id),))
            if candidates:
                self._stage(conn, candidates)
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
        row = conn.execute(
            "SELECT reference_deletions FROM coupon_series WHERE id = %s", (self.series.id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"coupon series {self.series.id} is gone")
        params = {"org": self.org_id, "series": self.series.id}
        found = {found[0]: found for found in conn.execute(self._resolve_sql, params)}
        failures, survivors = self._static_checks(candidates, found)
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

    def _stage(self, conn: psycopg.Connection[Any], candidates: list[Candidate]) -> None:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY br_stage (row_number, user_id, customer_key, coupon_id, coupon_code,"
                " redeemed_ms, till_id, bill_id, bill_number, details) FROM STDIN"
            ) as copy,
        ):
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

    def _commit(self, prepared: PreparedChunk) -> ChunkOutcome:
        conn = prepared.conn
        # Fencing: the job row stays locked until this chunk commits, so nobody can take the
        # lease over half-way through; and the job's checkpoint must be where the chunk
        # starts, so a chunk can never be applied twice, nor after a gap.
        # A worker frozen here (stopped) must not keep the row locked past its lease: the
        # sweeper passes over locked job rows, so Postgres ends a session idle that long.
        row = conn.execute(
            """
            SELECT cancel_requested,
                set_config('idle_in_transaction_session_timeout', %s, true)
            FROM upload_jobs
            WHERE id = %s AND lease_owner = %s AND status = 'RUNNING' AND next_record = %s
            FOR UPDATE
            """,
            (str(self.lease_seconds * 1000), self.job_id, self.token, prepared.first_record),
        ).fetchone()
        if row is None:
            raise LeaseLost(self.job_id)
        if row[0]:
            conn.execute(
                """
                UPDATE upload_jobs SET status = 'CANCELLED', finished_at = now(),
                    updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
                WHERE id = %s
                """,
                (self.job_id,),
            )
            conn.execute("DELETE FROM dry_run_redemptions WHERE job_id = %s", (self.job_id,))
            return ChunkOutcome(cancelled=True)

        failures = list(prepared.failures)
        accepted: list[tuple[int, int, int]] = []
        resolved = prepared.resolved
        if prepared.candidates:
            resolved = self._lock_series(conn, prepared)
            failures.extend(resolved.failures)
        if resolved.survivors:
            late, accepted = self._decide_and_insert(conn, resolved.survivors)
            failures.extend(late)
        outcome = ChunkOutcome(
            succeeded=len(accepted),
            failed=len(failures),
            error_counts=Counter(int(f.code) for f in failures),
        )
        if failures:
            with conn.cursor() as cur:
                with cur.copy("COPY br_err (row_number, code, message, cells) FROM STDIN") as copy:
                    for f in failures:
                        copy.write_row((f.row_number, int(f.code), f.message, f.cells))
                cur.execute(
                    """
                    INSERT INTO job_row_errors (job_id, row_number, org_id, code, message, cells)
                    SELECT %(job)s, row_number, %(org)s, code, message, cells FROM br_err
                    """,
                    {"job": self.job_id, "org": self.org_id},
                )
        conn.execute(
            """
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
            """,
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
        row = conn.execute(
            "SELECT reference_deletions, set_config('app.references_checked', 'on', true)"
            " FROM coupon_series WHERE id = %s FOR NO KEY UPDATE",
            (self.series.id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"coupon series {self.series.id} is gone")
        if row[0] == prepared.resolved.deletions:
            return prepared.resolved
        log.info("chunk: a coupon or customer was deleted since its look-ups; looking again")
        return self._resolve(conn, prepared.candidates)

    def _decide_and_insert(
        self, conn: psycopg.Connection[Any], survivors: list[Survivor]
    ) -> tuple[list[Failure], list[tuple[int, int, int]]]:
        series = self.series
        params: dict[str, object] = {"org": self.org_id, "series": series.id, "job": self.job_id}
        with conn.cursor() as cur:
            # Under the series lock (`_lock_series`).
            cur.execute(
                self._coupon_counts_sql,
                {"coupons": _bigints(set(map(_coupon_of, survivors))), "job": self.job_id},
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
                        "job": self.job_id,
                        "rows": _bigints(s.candidate.row_number for s in redeemed),
                        "coupons": _bigints(s.coupon_id for s in redeemed),
                        "customers": _bigints(s.customer_id for s in redeemed),
                    },
                )
                probes = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
            customer_counts: dict[int, int] = {}
            if series.max_per_customer is not None:
                cur.execute(
                    self._customer_counts_sql,
                    {
                        "series": series.id,
                        "customers": _bigints(set(map(_customer_of, survivors))),
                        "job": self.job_id,
                    },
                )
                customer_counts = dict(cur.fetchall())
            failures, accepted = self._limit_checks(survivors, counts, probes, customer_counts)

            if accepted:
                # Only the decisions travel back: the rows themselves are staged already.
                params["rows"] = _bigints(row for row, _, _ in accepted)
                params["coupons"] = _bigints(coupon for _, coupon, _ in accepted)
                params["customers"] = _bigints(customer for _, _, customer in accepted)
                if self.dry_run:
                    cur.execute(
                        """
                        INSERT INTO dry_run_redemptions (job_id, row_number, org_id, coupon_id,
                            customer_id, redeemed_ms, till_id, bill_id, bill_number)
                        SELECT %(job)s, s.row_number, %(org)s, a.coupon_id, a.customer_id,
                            s.redeemed_ms, s.till_id, s.bill_id, s.bill_number
                        FROM unnest(%(rows)s::bigint[], %(coupons)s::bigint[],
                                    %(customers)s::bigint[])
                            AS a(row_number, coupon_id, customer_id)
                        JOIN br_stage s ON s.row_number = a.row_number
                        """,
                        params,
                    )
                    return failures, accepted
                # One statement: the redemptions and their coupons' counters.
                cur.execute(
                    """
                    WITH inserted AS (
                        INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id,
                            job_id, row_number, redeemed_ms, till_id, bill_id, bill_number,
                            details)
                        SELECT %(org)s, %(series)s, a.coupon_id, a.customer_id, %(job)s,
                            s.row_number, s.redeemed_ms, s.till_id, s.bill_id, s.bill_number,
                            s.details
                        FROM unnest(%(rows)s::bigint[], %(coupons)s::bigint[],
                                    %(customers)s::bigint[])
                            AS a(row_number, coupon_id, customer_id)
                        JOIN br_stage s ON s.row_number = a.row_number
                        ORDER BY s.row_number
                        RETURNING coupon_id
                    )
                    INSERT INTO coupon_counters AS c (coupon_id, org_id, redemption_count)
                    SELECT coupon_id, %(org)s, count(*) FROM inserted GROUP BY coupon_id
                    ON CONFLICT (coupon_id)
                    DO UPDATE SET redemption_count = c.redemption_count + excluded.redemption_count
                    """,
                    params,
                )
        return failures, accepted

    def _static_checks(
        self, candidates: list[Candidate], resolved: dict[int, tuple[Any, ...]]
    ) -> tuple[list[Failure], list[Survivor]]:
        """701 to 735, in precedence order: what the row and the reference data decide alone."""
        series = self.series
        fail = self.checker.failure_of
        failures: list[Failure] = []
        survivors: list[Survivor] = []
        for cand in candidates:
            _, customer_id, coupon_id, issued_to, expires_ms, revoked = resolved[cand.row_number]
            ms = cand.redeemed_ms
            if customer_id is None:
                failures.append(fail(cand, RowError.CUSTOMER_NOT_FOUND, self._who(cand)))
            elif coupon_id is None:
                failures.append(fail(cand, RowError.COUPON_NOT_FOUND, self._what(cand)))
            elif revoked:
                failures.append(fail(cand, RowError.COUPON_REVOKED, "the coupon is revoked"))
            elif not series.any_user and issued_to != customer_id:
                failures.append(
                    fail(
                        cand,
                        RowError.COUPON_NOT_ISSUED_TO_CUSTOMER,
                        f"coupon {coupon_id} is not issued to customer {customer_id}",
                    )
                )
            elif (series.valid_from_ms is not None and ms < series.valid_from_ms) or (
                series.valid_till_ms is not None and ms > series.valid_till_ms
            ):
                failures.append(
                    fail(
                        cand,
                        RowError.SERIES_NOT_VALID_ON_DATE,
                        "the series is not valid on the redemption date",
                    )
                )
            elif expires_ms is not None and ms > expires_ms:
                failures.append(
                    fail(cand, RowError.COUPON_EXPIRED, "the coupon had expired by then")
                )
            elif series.allowed_tills is not None and cand.till_id not in series.allowed_tills:
                failures.append(
                    fail(
                        cand,
                        RowError.TILL_NOT_ALLOWED,
                        f"till {cand.till_id!r} may not redeem this series",
                    )
                )
            else:
                survivors.append(Survivor(cand, customer_id, coupon_id))
        return failures, survivors

    def _limit_checks(
        self,
        survivors: list[Survivor],
        counts: dict[int, int],
        probes: dict[int, tuple[bool, bool]],
        customer_counts: dict[int, int],
    ) -> tuple[list[Failure], list[tuple[int, int, int]]]:
        """790 to 736, in precedence order and in file order: what earlier rows decide.

        `counts` holds the coupons' redemptions so far (absent: none), `probes` the rows of
        redeemed coupons that meet a recorded duplicate / an earlier redemption by the same
        customer, `customer_counts` the customers' redemptions in the series (when limited).
        """
        series = self.series
        fail = self.checker.failure_of
        failures: list[Failure] = []
        accepted: list[tuple[int, int, int]] = []  # (row number, coupon id, customer id)
        used: dict[int, int] = {}  # coupon id -> redemptions so far, this chunk included
        seen_keys: set[tuple[int, int, str, str, str]] = set()
        seen_pairs: set[tuple[int, int]] = set()
        max_coupon = series.max_per_coupon
        max_customer = series.max_per_customer
        no_probe = (False, False)
        # A coupon never redeemed that comes once in the chunk (most rows of a bulk load) can
        # meet no duplicate, no earlier redemption and no coupon limit (which is at least 1):
        # unless the series limits its customers, such a row is accepted as it is. This loop
        # is on the critical path of every chunk (it ran at 4 us a row).
        in_chunk = Counter(map(_coupon_of, survivors))
        for survivor in survivors:
            cand, customer_id, coupon_id = (
                survivor.candidate,
                survivor.customer_id,
                survivor.coupon_id,
            )
            if max_customer is None and in_chunk[coupon_id] == 1 and coupon_id not in counts:
                accepted.append((cand.row_number, coupon_id, customer_id))
                continue
            dup, same_user = probes.get(cand.row_number, no_probe)
            key = (coupon_id, cand.redeemed_ms, cand.till_id, cand.bill_id, cand.bill_number)
            if dup or key in seen_keys:
                failures.append(
                    fail(
                        cand,
                        RowError.DUPLICATE_REDEMPTION,
                        "this redemption (coupon, time, till and bill) is already recorded",
                    )
                )
                continue
            pair = (coupon_id, customer_id)
            if not series.same_user_multiple_redeem and (same_user or pair in seen_pairs):
                failures.append(
                    fail(
                        cand,
                        RowError.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED,
                        "the customer has already redeemed this coupon",
                    )
                )
                continue
            so_far = used.get(coupon_id)
            if so_far is None:
                so_far = counts.get(coupon_id, 0)
            if max_coupon is not None and so_far >= max_coupon:
                if max_coupon == 1:
                    failures.append(
                        fail(
                            cand, RowError.COUPON_ALREADY_REDEEMED, "the coupon is already redeemed"
                        )
                    )
                else:
                    failures.append(
                        fail(
                            cand,
                            RowError.REDEMPTION_LIMIT_REACHED,
                            f"the coupon has reached its limit of {max_coupon} redemptions",
                        )
                    )
                continue
            if max_customer is not None:
                mine = customer_counts.get(customer_id, 0)
                if mine >= max_customer:
                    failures.append(
                        fail(
                            cand,
                            RowError.CUSTOMER_SERIES_LIMIT_REACHED,
                            f"the customer has reached the series limit of {max_customer}",
                        )
                    )
                    continue
                customer_counts[customer_id] = mine + 1
            used[coupon_id] = so_far + 1
            seen_keys.add(key)
            seen_pairs.add(pair)
            accepted.append((cand.row_number, coupon_id, customer_id))
        return failures, accepted

    def _who(self, cand: Candidate) -> str:
        if cand.user_id is not None:
            return f"no customer with userId {cand.user_id}"
        return f"no customer with {self.customer_key} {cand.customer_key!r}"

    def _what(self, cand: Candidate) -> str:
        if cand.coupon_id is not None:
            return f"no coupon with couponId {cand.coupon_id} in series {self.series.id}"
        return f"no coupon with code {cand.coupon_code!r} in series {self.series.id}"


_coupon_of = attrgetter("coupon_id")
_customer_of = attrgetter("customer_id")


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
