"""Deterministic bench data: N customers, one series with N coupons issued to them, the CSV.

Customer i (id i + 1) has mobile MOBILE_BASE + i and coupon i (id i + 1, code BC<i>) issued to
it. Data row k redeems coupon perm(k) for its customer, where perm is a seeded affine
permutation of 0..N-1: rows arrive in no particular coupon order, as a real file would, and no
table of N indices is ever held in memory. One row in BAD_EVERY is bad, of one of five kinds in
turn, and the generator counts what each kind must produce, so the expected outcome is known
exactly without asking the service.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

# Sample 2's header and mapping (examples/sample2.csv), and its identifiers.
HEADER = (
    "redeemed date in millis, redeemed at, mobile, coupon code ,bill id, bill number, details\n"
)
# The columns of a redemption, in the order the bench's files write them (the chaos run's too).
COLUMNS = ("redeemedDateInMillis", "redeemedAt", "mobile", "couponCode", "billId", "billNumber")
UPLOAD_HEADERS = {key: index for index, key in enumerate((*COLUMNS, "details"))}
CUSTOMER_IDENTIFIER = "MOBILE"
COUPON_IDENTIFIER = "COUPON_CODE"

MOBILE_BASE = 9_100_000_000
UNKNOWN_MOBILE_BASE = 8_100_000_000  # no customer has a mobile in this range
FIRST_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z; row k is redeemed k seconds later
TILLS = 40

# The series: max 1 redemption per coupon, anyUser false. sameUserMultipleRedeem is true because
# with it false a coupon repeated later in the file by its own customer fails 716 (the customer
# already redeemed it) before the limit is looked at, so 711 could never happen with anyUser
# false; with it true the repeat reaches the per-coupon limit and fails 711.
MAX_PER_COUPON = 1
SAME_USER_MULTIPLE_REDEEM = True
ANY_USER = False

BAD_EVERY = 50  # 2% of the rows are bad
BAD_OFFSET = 25  # bad rows are those with k % BAD_EVERY == BAD_OFFSET, never row 0
FAR_BACK = 12_345  # half the repeated coupons come from this many rows back: another chunk

UNKNOWN_CUSTOMER = 701
UNKNOWN_COUPON = 702
WRONG_CUSTOMER = 703
BAD_DATE = 729
REPEATED_COUPON = 711
BAD_KINDS = (UNKNOWN_CUSTOMER, UNKNOWN_COUPON, WRONG_CUSTOMER, BAD_DATE, REPEATED_COUPON)

COPY_BLOCK_ROWS = 50_000


@dataclass(frozen=True)
class Permutation:
    """k -> (a * k + b) mod n with gcd(a, n) = 1: a bijection of 0..n-1 in O(1) memory."""

    n: int
    a: int
    b: int

    @classmethod
    def seeded(cls, n: int, seed: int) -> Permutation:
        rng = random.Random(seed)
        while True:
            a = rng.randrange(max(1, n // 3), max(2, n))
            if math.gcd(a, n) == 1:
                return cls(n, a, rng.randrange(n))

    def __call__(self, k: int) -> int:
        return (self.a * k + self.b) % self.n


@dataclass
class Expected:
    """What applying the first `rows` data rows must give."""

    rows: int = 0
    rejected: Counter[int] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.rejected.values())

    @property
    def applied(self) -> int:
        return self.rows - self.failed

    def copy(self) -> Expected:
        return Expected(self.rows, Counter(self.rejected))


@dataclass(frozen=True)
class Dataset:
    path: Path
    rows: int
    size: int
    expected: Expected
    sample: Expected  # the first `sample.rows` rows alone (the naive baseline's share)


# --- reference data ------------------------------------------------------------------------


def create_series(conn: psycopg.Connection[Any], org_id: int) -> int:
    row = conn.execute(
        """
        INSERT INTO coupon_series (org_id, name, max_redemptions_per_coupon,
            same_user_multiple_redeem, any_user)
        VALUES (%s, 'bench', %s, %s, %s) RETURNING id
        """,
        (org_id, MAX_PER_COUPON, SAME_USER_MULTIPLE_REDEEM, ANY_USER),
    ).fetchone()
    assert row is not None
    conn.commit()
    return int(row[0])


def _blocks(count: int, line: Callable[[int], str]) -> Iterator[str]:
    for start in range(0, count, COPY_BLOCK_ROWS):
        yield "".join(line(i) for i in range(start, min(count, start + COPY_BLOCK_ROWS)))


def seed_reference(conn: psycopg.Connection[Any], org_id: int, series_id: int, count: int) -> None:
    """`count` customers and a coupon issued to each, by COPY with explicit ids."""
    with conn.cursor() as cur:
        # Valid by construction: skip the row-by-row foreign-key checks while loading (a third
        # of the time). Only a superuser may; anyone else loads with the checks.
        replica = True
        try:
            with conn.transaction():
                cur.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            replica = False
        with cur.copy("COPY customers (id, org_id, mobile) FROM STDIN") as copy:
            for block in _blocks(count, lambda i: f"{i + 1}\t{org_id}\t{MOBILE_BASE + i}\n"):
                copy.write(block)
        with cur.copy(
            "COPY coupons (id, org_id, series_id, code, issued_to_customer_id) FROM STDIN"
        ) as copy:
            for block in _blocks(
                count, lambda i: f"{i + 1}\t{org_id}\t{series_id}\tBC{i:09d}\t{i + 1}\n"
            ):
                copy.write(block)
        # Explicit ids leave the identity sequences behind: move them past what we wrote.
        for table in ("customers", "coupons"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        if replica:
            cur.execute("RESET session_replication_role")
    conn.commit()


# --- the upload file -----------------------------------------------------------------------


def write_csv(path: Path, rows: int, seed: int, sample_rows: int) -> Dataset:
    """The N-row file in sample 2's shape, streamed to disk, with what it must produce."""
    perm = Permutation.seeded(rows, seed)
    expected = Expected()
    sample: Expected | None = None
    round_length = BAD_EVERY * len(BAD_KINDS)
    with path.open("w", encoding="ascii", newline="", buffering=1 << 20) as out:
        out.write(HEADER)
        for k in range(rows):
            if k == sample_rows:
                sample = expected.copy()
            expected.rows += 1
            j = perm(k)
            date = str(FIRST_MS + k * 1000)
            customer = MOBILE_BASE + j
            code = f"BC{j:09d}"
            if k % BAD_EVERY == BAD_OFFSET:
                kind = BAD_KINDS[(k // BAD_EVERY) % len(BAD_KINDS)]
                other_half = (k // round_length) % 2 == 1
                expected.rejected[kind] += 1
                if kind == UNKNOWN_CUSTOMER:
                    customer = UNKNOWN_MOBILE_BASE + k
                elif kind == UNKNOWN_COUPON:
                    code = f"ZZ{k:09d}"
                elif kind == WRONG_CUSTOMER:
                    customer = MOBILE_BASE + (j + 1) % rows
                elif kind == BAD_DATE:
                    # Excel's damage, or a date before 2000-01-01.
                    date = "1.70407E+12" if other_half else "946684799999"
                else:  # REPEATED_COUPON: the coupon (and customer) of an earlier, good row
                    earlier = perm(k - FAR_BACK if other_half and k >= FAR_BACK else k - 1)
                    customer, code = MOBILE_BASE + earlier, f"BC{earlier:09d}"
            out.write(f"{date},till-{k % TILLS},{customer},{code},B{k},N{k},bench\n")
    if sample is None:
        sample = expected.copy()
    return Dataset(path, rows, path.stat().st_size, expected, sample)


def write_error_csv(path: Path, rows: int) -> Dataset:
    """`rows` rows that all fail, half 701 (no such customer) and half 729 (bad date)."""
    expected = Expected()
    with path.open("w", encoding="ascii", newline="", buffering=1 << 20) as out:
        out.write(HEADER)
        for k in range(rows):
            expected.rows += 1
            if k % 2:
                expected.rejected[BAD_DATE] += 1
                date = "1.70407E+12"
            else:
                expected.rejected[UNKNOWN_CUSTOMER] += 1
                date = str(FIRST_MS + k * 1000)
            out.write(
                f"{date},till-{k % TILLS},{UNKNOWN_MOBILE_BASE + k},BC{k:09d},B{k},N{k},"
                f"error report bench row {k}\n"
            )
    return Dataset(path, rows, path.stat().st_size, expected, expected.copy())


def write_big_csv(path: Path, target_bytes: int) -> tuple[int, int]:
    """A file of at least `target_bytes` of valid rows (a block written again and again).

    Returns (bytes, data rows). Only the upload is measured with it, so rows may repeat.
    """
    block = "".join(
        f"{FIRST_MS + k * 1000},till-{k % TILLS},{MOBILE_BASE + k},BC{k:09d},B{k},N{k},bench\n"
        for k in range(10_000)
    )
    data = block.encode("ascii")
    size, rows = 0, 0
    with path.open("wb") as out:
        out.write(HEADER.encode("ascii"))
        size += len(HEADER)
        while size < target_bytes:
            out.write(data)
            size += len(data)
            rows += 10_000
    return size, rows
