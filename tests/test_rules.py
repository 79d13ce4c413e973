"""The row checks of core/rules.py called with plain data: no database, no worker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.codes import RowError
from core.rows import Candidate, CouponIdentifier, CustomerIdentifier, Mapping, RowChecker
from core.rules import Found, SeriesRules, Survivor, limit_checks, static_checks, who

MS = 1_603_128_622_000
ALICE, BOB = 11, 12
MOBILE_HEADERS = {"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}
CHECKER = RowChecker(
    Mapping(MOBILE_HEADERS, CustomerIdentifier.MOBILE, CouponIdentifier.COUPON_CODE), MS, 4
)
FAIL = CHECKER.failure_of
OPEN = SeriesRules(
    id=7,
    max_per_coupon=None,
    same_user_multiple_redeem=True,
    max_per_customer=None,
    valid_from_ms=None,
    valid_till_ms=None,
    any_user=True,
    allowed_tills=None,
)
DEFAULT = replace(OPEN, max_per_coupon=1, same_user_multiple_redeem=False, any_user=False)


def candidate(
    number: int, *, ms: int = MS, till: str = "T1", code: str = "C1", user_id: int | None = None
) -> Candidate:
    return Candidate(
        row_number=number,
        user_id=user_id,
        customer_key=None if user_id is not None else "9988776655",
        coupon_id=None,
        coupon_code=code,
        redeemed_ms=ms,
        till_id=till,
        bill_id="",
        bill_number="",
        details=None,
        cells=[str(ms), till, "9988776655", code],
    )


def survivor(
    number: int, coupon: int, customer: int = ALICE, *, ms: int = MS, till: str = "T1"
) -> Survivor:
    return Survivor(candidate(number, ms=ms, till=till), customer, coupon)


STATIC = (
    RowError.CUSTOMER_NOT_FOUND,
    RowError.COUPON_NOT_FOUND,
    RowError.COUPON_REVOKED,
    RowError.COUPON_NOT_ISSUED_TO_CUSTOMER,
    RowError.SERIES_NOT_VALID_ON_DATE,
    RowError.COUPON_EXPIRED,
    RowError.TILL_NOT_ALLOWED,
)


def breaking(broken: set[RowError]) -> tuple[SeriesRules, Found]:
    """A series and a look-up by which a row at MS on till T1 breaks exactly `broken`."""
    series = replace(
        DEFAULT,
        valid_from_ms=MS + 1 if RowError.SERIES_NOT_VALID_ON_DATE in broken else MS - 1,
        allowed_tills=frozenset({"T9"}) if RowError.TILL_NOT_ALLOWED in broken else None,
    )
    found = (
        2,
        None if RowError.CUSTOMER_NOT_FOUND in broken else ALICE,
        None if RowError.COUPON_NOT_FOUND in broken else 500,
        BOB if RowError.COUPON_NOT_ISSUED_TO_CUSTOMER in broken else ALICE,
        MS - 1 if RowError.COUPON_EXPIRED in broken else None,
        RowError.COUPON_REVOKED in broken,
    )
    return series, found


@pytest.mark.parametrize("first", range(len(STATIC)), ids=[code.name for code in STATIC])
def test_a_row_breaking_several_static_rules_gets_the_first_in_precedence(first: int) -> None:
    for broken in ({STATIC[first]}, set(STATIC[first:])):
        series, found = breaking(broken)
        failures, survivors = static_checks(series, FAIL, "mobile", [candidate(2)], {2: found})
        assert survivors == []
        assert [(f.row_number, f.code) for f in failures] == [(2, STATIC[first])]


def test_a_row_breaking_no_static_rule_survives_with_its_customer_and_coupon() -> None:
    series, found = breaking(set())
    cand = candidate(2)
    failures, survivors = static_checks(series, FAIL, "mobile", [cand], {2: found})
    assert failures == []
    assert survivors == [Survivor(cand, ALICE, 500)]


def test_any_user_lets_a_coupon_issued_to_another_customer_through() -> None:
    series, found = breaking({RowError.COUPON_NOT_ISSUED_TO_CUSTOMER})
    _, survivors = static_checks(
        replace(series, any_user=True), FAIL, "mobile", [candidate(2)], {2: found}
    )
    assert len(survivors) == 1


def test_not_found_messages_quote_the_rows_own_identifiers() -> None:
    series, found = breaking({RowError.CUSTOMER_NOT_FOUND})
    failures, _ = static_checks(series, FAIL, "mobile", [candidate(2)], {2: found})
    assert failures[0].message == "no customer with mobile '9988776655'"
    assert who("mobile", candidate(2, user_id=42)) == "no customer with userId 42"
    series, found = breaking({RowError.COUPON_NOT_FOUND})
    failures, _ = static_checks(series, FAIL, "mobile", [candidate(2, code="X9")], {2: found})
    assert failures[0].message == "no coupon with code 'X9' in series 7"
    assert failures[0].cells == [str(MS), "T1", "9988776655", "X9"]


def test_a_coupon_never_redeemed_once_in_the_chunk_is_accepted_without_its_probes() -> None:
    # The fast path: no count, so nothing earlier can matter; a probe (which the applier
    # never makes for such a row) is not even looked at.
    rows = [survivor(2, 500), survivor(3, 501, BOB)]
    failures, accepted = limit_checks(DEFAULT, FAIL, rows, {}, {2: (True, True)}, {})
    assert failures == []
    assert accepted == [(2, 500, ALICE), (3, 501, BOB)]


def test_the_fast_path_does_not_skip_a_per_customer_limit() -> None:
    series = replace(DEFAULT, max_per_customer=1)
    rows = [survivor(2, 500)]
    failures, accepted = limit_checks(series, FAIL, rows, {}, {}, {ALICE: 1})
    assert accepted == []
    assert [f.code for f in failures] == [RowError.CUSTOMER_SERIES_LIMIT_REACHED]
    assert "series limit of 1" in failures[0].message


def test_the_same_redemption_twice_in_a_chunk_is_a_duplicate_the_second_time() -> None:
    rows = [survivor(2, 500), survivor(3, 500, BOB), survivor(4, 500, BOB, till="T2")]
    failures, accepted = limit_checks(OPEN, FAIL, rows, {}, {}, {})
    assert accepted == [(2, 500, ALICE), (4, 500, BOB)]
    assert [(f.row_number, f.code) for f in failures] == [(3, RowError.DUPLICATE_REDEMPTION)]


def test_a_customer_redeeming_a_coupon_again_in_the_chunk_is_refused_unless_allowed() -> None:
    rows = [survivor(2, 500), survivor(3, 500, ms=MS + 1)]
    refusing = replace(OPEN, same_user_multiple_redeem=False)
    failures, accepted = limit_checks(refusing, FAIL, rows, {}, {}, {})
    assert accepted == [(2, 500, ALICE)]
    assert [(f.row_number, f.code) for f in failures] == [
        (3, RowError.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED)
    ]
    _, accepted = limit_checks(OPEN, FAIL, rows, {}, {}, {})
    assert [row for row, _, _ in accepted] == [2, 3]


def test_a_single_use_coupon_redeemed_before_is_already_redeemed() -> None:
    failures, accepted = limit_checks(DEFAULT, FAIL, [survivor(2, 500)], {500: 1}, {}, {})
    assert accepted == []
    assert [f.code for f in failures] == [RowError.COUPON_ALREADY_REDEEMED]


def test_a_multi_use_coupon_counts_its_earlier_and_this_chunks_redemptions() -> None:
    series = replace(OPEN, max_per_coupon=3)
    rows = [survivor(2, 500), survivor(3, 500, BOB, ms=MS + 1), survivor(4, 500, 13, ms=MS + 2)]
    failures, accepted = limit_checks(series, FAIL, rows, {500: 2}, {}, {})
    assert accepted == [(2, 500, ALICE)]
    assert [(f.row_number, f.code) for f in failures] == [
        (3, RowError.REDEMPTION_LIMIT_REACHED),
        (4, RowError.REDEMPTION_LIMIT_REACHED),
    ]
    assert "limit of 3 redemptions" in failures[0].message


def test_a_customers_series_limit_counts_the_rows_accepted_before_in_file_order() -> None:
    series = replace(OPEN, max_per_customer=2)
    rows = [survivor(2, 500), survivor(3, 501), survivor(4, 502), survivor(5, 503, BOB)]
    customer_counts = {ALICE: 1}
    failures, accepted = limit_checks(series, FAIL, rows, {}, {}, customer_counts)
    assert accepted == [(2, 500, ALICE), (5, 503, BOB)]
    assert [(f.row_number, f.code) for f in failures] == [
        (3, RowError.CUSTOMER_SERIES_LIMIT_REACHED),
        (4, RowError.CUSTOMER_SERIES_LIMIT_REACHED),
    ]
    assert customer_counts == {ALICE: 2, BOB: 1}


LIMITS = (
    RowError.DUPLICATE_REDEMPTION,
    RowError.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED,
    RowError.COUPON_ALREADY_REDEEMED,
    RowError.CUSTOMER_SERIES_LIMIT_REACHED,
)


@pytest.mark.parametrize("first", range(len(LIMITS)), ids=[code.name for code in LIMITS])
def test_a_row_breaking_several_limits_gets_the_first_in_precedence(first: int) -> None:
    for broken in ({LIMITS[first]}, set(LIMITS[first:])):
        series = replace(
            DEFAULT,
            max_per_coupon=1 if RowError.COUPON_ALREADY_REDEEMED in broken else None,
            max_per_customer=1 if RowError.CUSTOMER_SERIES_LIMIT_REACHED in broken else None,
        )
        probe = (
            RowError.DUPLICATE_REDEMPTION in broken,
            RowError.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED in broken,
        )
        failures, accepted = limit_checks(
            series, FAIL, [survivor(2, 500)], {500: 1}, {2: probe}, {ALICE: 1}
        )
        assert accepted == []
        assert [f.code for f in failures] == [LIMITS[first]]


def test_a_row_within_every_limit_of_a_coupon_redeemed_before_is_accepted() -> None:
    series = replace(DEFAULT, max_per_coupon=2, max_per_customer=2)
    failures, accepted = limit_checks(
        series, FAIL, [survivor(2, 500)], {500: 1}, {2: (False, False)}, {ALICE: 1}
    )
    assert failures == []
    assert accepted == [(2, 500, ALICE)]
