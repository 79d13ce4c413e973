"""What a chunk's limit checks read of earlier redemptions: statements built per rule set.

Each statement is put together from the named parts below, chosen by the series' rules and the
kind of run, never from input, and each variant is built once (`functools.cache`). A part a
series' rules make pointless is left out rather than switched off by a parameter: a probe
`WHERE NOT %(same_user_ok)s AND ...` in a sameUserMultipleRedeem series folds to false, and
row-level security's policy, which must stay as the scan's filter, then leaves the planner a
scan of the whole table under a false one-time filter. Once redemptions passes
min_parallel_table_scan_size it puts a Gather over a parallel scan there, and Postgres starts
its workers again for every probed row: a chunk took 34 s instead of 0.9 s (issue 13; 30-50 ms
a probed row here: tests/test_apply_plan.py, bench/README.md). Only the custom plans, where the
parameter is a constant, were slow: in the test, the last 2 of 12 chunks on one connection, run
once psycopg had prepared the statement and Postgres had moved to a generic plan, took 6 ms.
So each connection pays for the first ten executions of the statement: the bench's 200,000-row
import (20 chunks on two connections) paid on every chunk, its 1,000,000-row one on few
(bench/README.md, the steady-state run).
"""

from __future__ import annotations

from functools import cache

# Coupons' redemptions so far: the counters, and in a dry run its own would-be redemptions.
_COUNTERS = """
    SELECT coupon_id, redemption_count AS n FROM coupon_counters
    WHERE coupon_id = ANY(%(coupons)s::bigint[]) AND redemption_count > 0"""
_DRY_COUPON_USES = """
    SELECT coupon_id, count(*) FROM dry_run_redemptions
    WHERE job_id = %(job)s AND coupon_id = ANY(%(coupons)s::bigint[])
    GROUP BY coupon_id"""

# Customers' redemptions in the series, for its per-customer limit.
_CUSTOMER_USES = """
    SELECT customer_id, count(*) AS n FROM redemptions
    WHERE series_id = %(series)s AND customer_id = ANY(%(customers)s::bigint[])
    GROUP BY customer_id"""
_DRY_CUSTOMER_USES = """
    SELECT customer_id, count(*) FROM dry_run_redemptions
    WHERE job_id = %(job)s AND customer_id = ANY(%(customers)s::bigint[])
    GROUP BY customer_id"""

# The probed rows (rows of coupons redeemed before), their coupons and customers, and what is
# staged of them.
_PROBED_ROWS = """
    FROM unnest(%(rows)s::bigint[], %(coupons)s::bigint[], %(customers)s::bigint[])
        AS a(row_number, coupon_id, customer_id)
    JOIN br_stage s ON s.row_number = a.row_number"""

# Each probe finds, for one probed row, one earlier redemption of its coupon: with its natural
# key (790), or by its customer (716). Every one is an index probe (uq_redemptions_natural_key,
# whose first column is the coupon; the dry-run table's own indexes by job).
_DUPLICATE = """
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM redemptions r
        WHERE r.coupon_id = a.coupon_id AND r.redeemed_ms = s.redeemed_ms
          AND r.till_id = s.till_id AND r.bill_id = s.bill_id
          AND r.bill_number = s.bill_number
        LIMIT 1
    ) dup ON true"""
_SAME_CUSTOMER = """
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM redemptions r
        WHERE r.coupon_id = a.coupon_id AND r.customer_id = a.customer_id
        LIMIT 1
    ) same ON true"""
_DRY_DUPLICATE = """
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM dry_run_redemptions d
        WHERE d.job_id = %(job)s AND d.coupon_id = a.coupon_id
          AND d.redeemed_ms = s.redeemed_ms AND d.till_id = s.till_id
          AND d.bill_id = s.bill_id AND d.bill_number = s.bill_number
        LIMIT 1
    ) dry_dup ON true"""
_DRY_SAME_CUSTOMER = """
    LEFT JOIN LATERAL (
        SELECT true AS hit FROM dry_run_redemptions d
        WHERE d.job_id = %(job)s AND d.coupon_id = a.coupon_id
          AND d.customer_id = a.customer_id
        LIMIT 1
    ) dry_same ON true"""


def _summed(parts: list[str], key: str) -> str:
    """One row a key: its count over every part (a key may come from several)."""
    if len(parts) == 1:
        return "\n".join(parts)
    union = "\n    UNION ALL".join(parts)
    return f"SELECT {key}, sum(n)::bigint FROM ({union}\n) parts GROUP BY {key}"


@cache
def coupon_counts_sql(*, dry_run: bool) -> str:
    """(coupon id, redemptions so far) of the coupons in %(coupons)s that have any."""
    return _summed([_COUNTERS, _DRY_COUPON_USES] if dry_run else [_COUNTERS], "coupon_id")


@cache
def customer_counts_sql(*, dry_run: bool) -> str:
    """(customer id, redemptions in the series) of the customers in %(customers)s that have
    any."""
    parts = [_CUSTOMER_USES, _DRY_CUSTOMER_USES] if dry_run else [_CUSTOMER_USES]
    return _summed(parts, "customer_id")


def _any_hit(aliases: list[str]) -> str:
    return " OR ".join(f"{alias}.hit IS NOT NULL" for alias in aliases) or "false"


@cache
def probe_sql(*, same_customer: bool, dry_run: bool) -> str:
    """(row number, meets a recorded duplicate, meets an earlier redemption by its customer)
    for each probed row; the last is false, unlooked for, unless `same_customer` (the series
    refuses a customer's second redemption of a coupon)."""
    laterals = {"dup": _DUPLICATE}
    if same_customer:
        laterals["same"] = _SAME_CUSTOMER
    if dry_run:
        laterals["dry_dup"] = _DRY_DUPLICATE
        if same_customer:
            laterals["dry_same"] = _DRY_SAME_CUSTOMER
    duplicate = _any_hit([alias for alias in laterals if alias.endswith("dup")])
    same = _any_hit([alias for alias in laterals if alias.endswith("same")])
    return f"SELECT a.row_number, {duplicate}, {same}" + _PROBED_ROWS + "".join(laterals.values())
