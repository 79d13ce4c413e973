"""The row checks that need the reference data and earlier redemptions, as plain Python.

Given what the database said of a row (its customer, its coupon, the coupon's redemptions so
far), these decide it; they read nothing themselves, so a test calls them with plain data and
core/apply.py calls them with what its statements found. Codes 701 to 735 (`static_checks`)
are what the row and the reference data decide alone; 790 to 736 (`limit_checks`) what
earlier rows decide, in file order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from core.codes import RowError
from core.rows import Candidate, Failure

# RowChecker.failure_of: a candidate's failure, its cells kept for the report.
FailureOf = Callable[[Candidate, RowError, str], Failure]
# What the look-ups found of a candidate, by its row number: (row number, customer id, coupon
# id, the customer the coupon is issued to, its expiry in epoch ms, revoked); None when absent.
Found = tuple[Any, ...]
# (row number, coupon id, customer id) of a row that applies.
Accepted = tuple[int, int, int]


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


@dataclass(frozen=True, slots=True)
class Survivor:
    """A row past every check that earlier rows cannot change: its customer and coupon."""

    candidate: Candidate
    customer_id: int
    coupon_id: int


coupon_of = attrgetter("coupon_id")
customer_of = attrgetter("customer_id")


def static_checks(
    series: SeriesRules,
    fail: FailureOf,
    customer_key: str,
    candidates: list[Candidate],
    found: Mapping[int, Found],
) -> tuple[list[Failure], list[Survivor]]:
    """701 to 735, in precedence order: what the row and the reference data decide alone.

    `customer_key` is the key the job's customerIdentifier names (for the 701 message)."""
    failures: list[Failure] = []
    survivors: list[Survivor] = []
    for cand in candidates:
        _, customer_id, coupon_id, issued_to, expires_ms, revoked = found[cand.row_number]
        ms = cand.redeemed_ms
        if customer_id is None:
            failures.append(fail(cand, RowError.CUSTOMER_NOT_FOUND, who(customer_key, cand)))
        elif coupon_id is None:
            failures.append(fail(cand, RowError.COUPON_NOT_FOUND, what(series.id, cand)))
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
            failures.append(fail(cand, RowError.COUPON_EXPIRED, "the coupon had expired by then"))
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


def limit_checks(
    series: SeriesRules,
    fail: FailureOf,
    survivors: list[Survivor],
    counts: Mapping[int, int],
    probes: Mapping[int, tuple[bool, bool]],
    customer_counts: dict[int, int],
) -> tuple[list[Failure], list[Accepted]]:
    """790 to 736, in precedence order and in file order: what earlier rows decide.

    `counts` holds the coupons' redemptions so far (absent: none), `probes` the rows of
    redeemed coupons that meet a recorded duplicate / an earlier redemption by the same
    customer, `customer_counts` the customers' redemptions in the series (when limited); it
    is counted on as rows are accepted.
    """
    failures: list[Failure] = []
    accepted: list[Accepted] = []
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
    in_chunk = Counter(map(coupon_of, survivors))
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
                    fail(cand, RowError.COUPON_ALREADY_REDEEMED, "the coupon is already redeemed")
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


def who(customer_key: str, cand: Candidate) -> str:
    """The 701 message: the customer the row names, as it names it."""
    if cand.user_id is not None:
        return f"no customer with userId {cand.user_id}"
    return f"no customer with {customer_key} {cand.customer_key!r}"


def what(series_id: int, cand: Candidate) -> str:
    """The 702 message: the coupon the row names, as it names it."""
    if cand.coupon_id is not None:
        return f"no coupon with couponId {cand.coupon_id} in series {series_id}"
    return f"no coupon with code {cand.coupon_code!r} in series {series_id}"
