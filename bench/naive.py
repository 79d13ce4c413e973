"""The naive baseline: one transaction per row, the way a first version would do it.

For each of the first `sample_rows` rows of the same file: check the date in Python, then in
one transaction select the customer by mobile, select the coupon by code FOR UPDATE, read its
counter, and insert the redemption and upsert the counter. Timed on the sample and extrapolated
linearly to the whole file (its cost per row does not depend on the file's length).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from bench import datagen
from bench.lowerbound import MAX_FUTURE_MS, MIN_MS
from bench.services import Services, connect


@dataclass(frozen=True)
class NaiveResult:
    rows: int
    applied: int
    rejected: Counter[int]
    seconds: float

    @property
    def failed(self) -> int:
        return sum(self.rejected.values())

    @property
    def seconds_per_row(self) -> float:
        return self.seconds / self.rows if self.rows else float("nan")


def run(
    services: Services, path: Path, *, org_id: int, series_id: int, sample_rows: int
) -> NaiveResult:
    applied = rows = 0
    rejected: Counter[int] = Counter()
    max_ms = int(time.time() * 1000) + MAX_FUTURE_MS
    with (
        connect(services.owner_url, autocommit=True) as conn,
        path.open(newline="", encoding="utf-8") as handle,
    ):
        records = csv.reader(handle)
        next(records)  # the header
        started = time.perf_counter()
        for number, record in enumerate(islice(records, sample_rows), start=2):
            rows += 1
            redeemed, till, mobile, code, bill_id, bill_number, details = (
                cell.strip() for cell in record
            )
            ms = int(redeemed) if redeemed.isdigit() else None
            if ms is None or not MIN_MS <= ms <= max_ms:
                rejected[datagen.BAD_DATE] += 1
                continue
            with conn.transaction():
                customer = conn.execute(
                    "SELECT id FROM customers WHERE org_id = %s AND mobile = %s", (org_id, mobile)
                ).fetchone()
                if customer is None:
                    rejected[datagen.UNKNOWN_CUSTOMER] += 1
                    continue
                coupon = conn.execute(
                    "SELECT id, issued_to_customer_id FROM coupons"
                    " WHERE series_id = %s AND code = %s FOR UPDATE",
                    (series_id, code),
                ).fetchone()
                if coupon is None:
                    rejected[datagen.UNKNOWN_COUPON] += 1
                    continue
                if coupon[1] != customer[0]:
                    rejected[datagen.WRONG_CUSTOMER] += 1
                    continue
                counter = conn.execute(
                    "SELECT redemption_count FROM coupon_counters WHERE coupon_id = %s",
                    (coupon[0],),
                ).fetchone()
                if counter is not None and counter[0] >= datagen.MAX_PER_COUPON:
                    rejected[datagen.REPEATED_COUPON] += 1
                    continue
                conn.execute(
                    """
                    INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id,
                        row_number, redeemed_ms, till_id, bill_id, bill_number, details)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    """,
                    (
                        org_id,
                        series_id,
                        coupon[0],
                        customer[0],
                        number,
                        ms,
                        till,
                        bill_id,
                        bill_number,
                        details or None,
                    ),
                )
                conn.execute(
                    """
                    INSERT INTO coupon_counters AS n (coupon_id, org_id, redemption_count)
                    VALUES (%s, %s, 1)
                    ON CONFLICT (coupon_id)
                    DO UPDATE SET redemption_count = n.redemption_count + 1
                    """,
                    (coupon[0], org_id),
                )
                applied += 1
        seconds = time.perf_counter() - started
    return NaiveResult(rows, applied, rejected, seconds)
