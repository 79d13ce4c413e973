"""What a chunk reads: its rows staged, their customers and coupons looked up, and what the
limit checks read of earlier redemptions; and the preview's judging, which reads only.

The writes of a chunk (the fence, the series lock, redemptions, counters, row errors and
progress) are core/apply.py's; the checks themselves are core/rules.py's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from functools import cache
from typing import Any

import psycopg

from core.probes import coupon_counts_sql, customer_counts_sql, probe_sql
from core.rows import CUSTOMER_COLUMNS, Candidate, Failure, RowChecker
from core.rules import (
    Found,
    SeriesRules,
    Survivor,
    coupon_of,
    customer_of,
    limit_checks,
    static_checks,
)

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
STAGING = """
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
QUIET = "SET LOCAL client_min_messages = warning"
SET_ORG = "SELECT set_config('app.org_id', %s, true)"
COPY_STAGE = (
    "COPY br_stage (row_number, user_id, customer_key, coupon_id, coupon_code,"
    " redeemed_ms, till_id, bill_id, bill_number, details) FROM STDIN"
)


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


class LimitReads:
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
            {"coupons": bigints(set(map(coupon_of, survivors))), "job": job_id},
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
                    "rows": bigints(s.candidate.row_number for s in redeemed),
                    "coupons": bigints(s.coupon_id for s in redeemed),
                    "customers": bigints(s.customer_id for s in redeemed),
                },
            )
            probes = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        customer_counts: dict[int, int] = {}
        if self.series.max_per_customer is not None:
            cur.execute(
                self._customer_counts_sql,
                {
                    "series": self.series.id,
                    "customers": bigints(set(map(customer_of, survivors))),
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
        conn.execute(QUIET)
        conn.execute(STAGING)
        conn.execute(SET_ORG, (str(org_id),))
        series = load_series(conn, series_id)
        if candidates:
            stage(conn, candidates)
            conn.execute("SET LOCAL transaction_read_only = on")
            sql = resolve_sql(CUSTOMER_COLUMNS.get(customer_key))
            found = look_up(conn, sql, org_id, series.id)
            fail = checker.failure_of
            early, survivors = static_checks(series, fail, customer_key, candidates, found)
            failures.extend(early)
            if survivors:
                with conn.cursor() as cur:
                    reads = LimitReads(series, dry_run=False).read(cur, survivors, None)
                late, _ = limit_checks(series, fail, survivors, *reads)
                failures.extend(late)
    finally:
        rollback(conn)
    return {failure.row_number: failure for failure in failures}


def stage(conn: psycopg.Connection[Any], candidates: list[Candidate]) -> None:
    with conn.cursor() as cur, cur.copy(COPY_STAGE) as copy:
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


def look_up(
    conn: psycopg.Connection[Any], sql: str, org_id: int, series_id: int
) -> dict[int, Found]:
    """The staged rows' customers and coupons (`resolve_sql`), by row number."""
    return {found[0]: found for found in conn.execute(sql, {"org": org_id, "series": series_id})}


def bigints(values: Iterable[int]) -> str:
    """A bigint[] in Postgres's text form, for a `%s::bigint[]` parameter.

    psycopg's list dumper handles each element in Python: the profile of a million-row job
    put a quarter of the main thread's CPU in it. One join of the decimal strings costs a
    fraction of that; the values are ints, so nothing needs quoting.
    """
    return "{" + ",".join(map(str, values)) + "}"


def rollback(conn: psycopg.Connection[Any]) -> None:
    """Roll back, unless the connection is already gone (closing it rolls back anyway)."""
    with contextlib.suppress(psycopg.Error):
        conn.rollback()
