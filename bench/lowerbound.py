"""The lower bound: the same file applied by hand-written SQL, with nothing per row in Python.

COPY the whole file into a temp staging table (row numbers from an identity column, in file
order), index it, then one statement per 10,000-row chunk, committed per chunk: resolve the
customer by mobile and the coupon by code through their unique indexes, reject bad dates (729),
unknown customers (701) and coupons (702) and coupons issued to someone else (703), apply the
per-coupon limit counting earlier chunks (coupon_counters) and earlier rows of the chunk (the
first wins: 711), insert the redemptions and upsert the counters.

It knows the file is clean in form (no quotes, no blanks, no padding, plain digits for mobiles)
and that the series has no dates, tills, expiry or per-customer limit to check: that is what
makes it a bound rather than a second implementation. It takes no row locks: it is the only
writer, where the service must lock the series it applies against racing jobs and deletes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import datagen
from bench.services import Services, connect

MIN_MS = 946_684_800_000  # 2000-01-01, as the service
MAX_FUTURE_MS = 5 * 60 * 1000

_STAGE = """
CREATE TEMP TABLE lb_stage (
    row_number bigint GENERATED ALWAYS AS IDENTITY,
    redeemed text, till text, mobile text, code text,
    bill_id text, bill_number text, details text
)
"""

# One statement per chunk (one round trip). Measured choices (EXPLAIN ANALYZE, 200,000 rows):
# - LATERAL ... LIMIT 1 (unique keys: one row at most anyway) keeps every look-up an index
#   probe; as a plain join the counters were hashed whole (a seq scan per chunk, growing).
# - `d ... OFFSET 0` and MATERIALIZED compute the date and the checks once per row: inlined,
#   the regex ran in every place the CASE was copied to (sort key, window, projection): -25%.
_CHUNK = """
WITH checked AS MATERIALIZED (
    SELECT s.row_number, s.till, s.bill_id, s.bill_number, s.details, d.ms,
        cu.id AS customer_id, k.id AS coupon_id, coalesce(n.redemption_count, 0) AS used,
        CASE
            WHEN d.ms IS NULL OR d.ms < %(min_ms)s OR d.ms > %(max_ms)s THEN 729
            WHEN cu.id IS NULL THEN 701
            WHEN k.id IS NULL THEN 702
            WHEN k.issued_to_customer_id IS DISTINCT FROM cu.id THEN 703
        END AS error
    FROM lb_stage s
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.redeemed ~ '^[0-9]{1,18}$' THEN s.redeemed::bigint END AS ms OFFSET 0
    ) d
    LEFT JOIN LATERAL (
        SELECT c.id FROM customers c WHERE c.org_id = %(org)s AND c.mobile = s.mobile LIMIT 1
    ) cu ON true
    LEFT JOIN LATERAL (
        SELECT k.id, k.issued_to_customer_id FROM coupons k
        WHERE k.series_id = %(series)s AND k.code = s.code LIMIT 1
    ) k ON true
    LEFT JOIN LATERAL (
        SELECT n.redemption_count FROM coupon_counters n WHERE n.coupon_id = k.id LIMIT 1
    ) n ON true
    WHERE s.row_number BETWEEN %(first)s AND %(last)s
),
limited AS (
    SELECT c.*,
        CASE WHEN c.error IS NULL
            AND c.used + row_number() OVER (
                PARTITION BY c.coupon_id, c.error IS NULL ORDER BY c.row_number
            ) > %(max_per_coupon)s
        THEN 711 ELSE c.error END AS outcome
    FROM checked c
),
inserted AS (
    INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id, row_number,
        redeemed_ms, till_id, bill_id, bill_number, details)
    SELECT %(org)s, %(series)s, coupon_id, customer_id, row_number + 1,
        ms, till, coalesce(bill_id, ''), coalesce(bill_number, ''), details
    FROM limited WHERE outcome IS NULL
    RETURNING coupon_id
),
counted AS (
    INSERT INTO coupon_counters AS n (coupon_id, org_id, redemption_count)
    SELECT coupon_id, %(org)s, count(*) FROM inserted GROUP BY coupon_id
    ON CONFLICT (coupon_id)
    DO UPDATE SET redemption_count = n.redemption_count + excluded.redemption_count
)
SELECT outcome, count(*) FROM limited GROUP BY outcome
"""


@dataclass(frozen=True)
class LowerBoundResult:
    rows: int
    applied: int
    rejected: Counter[int]
    seconds: float
    copy_seconds: float

    @property
    def failed(self) -> int:
        return sum(self.rejected.values())


def run(
    services: Services, path: Path, *, org_id: int, series_id: int, chunk_rows: int
) -> LowerBoundResult:
    applied = 0
    rejected: Counter[int] = Counter()
    max_ms = int(time.time() * 1000) + MAX_FUTURE_MS
    with connect(services.owner_url) as conn:
        # The staging table is ~100 bytes a row: keep it in memory rather than spilling the
        # default 8 MB of temp buffers to disk (must be set before the session's first temp use).
        conn.execute("SET temp_buffers = '512MB'")
        # It finds each row's coupon and customer in the very statement that inserts it, and
        # is the only writer: like the service's chunks, it vouches for its references and is
        # spared the redemptions' per-statement reference check (migration 0007).
        conn.execute("SET app.references_checked = 'on'")
        started = time.perf_counter()
        conn.execute(_STAGE)
        with conn.cursor() as cur, path.open("rb") as handle:
            with cur.copy(
                "COPY lb_stage (redeemed, till, mobile, code, bill_id, bill_number, details)"
                " FROM STDIN (FORMAT csv, HEADER true)"
            ) as copy:
                while block := handle.read(1 << 20):
                    copy.write(block)
            cur.execute("ALTER TABLE lb_stage ADD PRIMARY KEY (row_number)")
            cur.execute("ANALYZE lb_stage")
            row = cur.execute("SELECT count(*) FROM lb_stage").fetchone()
            rows = int(row[0]) if row else 0
        conn.commit()
        copy_seconds = time.perf_counter() - started
        params: dict[str, object] = {
            "org": org_id,
            "series": series_id,
            "min_ms": MIN_MS,
            "max_ms": max_ms,
            "max_per_coupon": datagen.MAX_PER_COUPON,
        }
        for first in range(1, rows + 1, chunk_rows):
            params["first"], params["last"] = first, first + chunk_rows - 1
            for outcome, count in conn.execute(_CHUNK, params).fetchall():
                if outcome is None:
                    applied += count
                else:
                    rejected[int(outcome)] += count
            conn.commit()
        seconds = time.perf_counter() - started
    return LowerBoundResult(rows, applied, rejected, seconds, copy_seconds)
