"""When a row breaks several rules, the first in DESIGN.md's order names its error.

Each case runs a real job through the pipeline. Its last row breaks two rules at once and must
fail with the higher one; the rows before it (controls) break only the lower one and must fail
with it, which shows that the last row really breaks both. Rules that depend on history (a
duplicate, a limit) get it from an earlier job, also through the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from core import pipeline
from core.codes import PRECEDENCE, RowError
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_job, create_series

HEADERS = (
    '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3,'
    ' "billId": 4, "billNumber": 5, "details": 6}'
)
HEADER_LINE = "date,till,mobile,code,bill,number,details"
ALICE = "9000000001"  # customers every case has
BOB = "9000000002"
NOBODY = "9000000999"  # no such customer


def ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def row(
    *,
    date: object = SAMPLE_MS,
    till: str = "T1",
    mobile: str = ALICE,
    code: str = "CODE",
    details: str = "",
) -> str:
    return ",".join([str(date), till, mobile, code, "", "", details])


@dataclass(frozen=True)
class Coupon:
    code: str = "CODE"
    issued_to: str | None = ALICE  # a mobile of ALICE / BOB, or None
    expires_at: datetime | None = None
    revoked: bool = False


@dataclass(frozen=True)
class Case:
    winner: RowError
    loser: RowError
    # The checked job: (line, the code it must fail with); the last breaks both rules.
    rows: tuple[tuple[str, RowError], ...]
    series: dict[str, object] = field(default_factory=dict)
    coupons: tuple[Coupon, ...] = (Coupon(),)
    # An earlier job and each row's outcome (None: redeemed), then a change to the series.
    history: tuple[tuple[str, RowError | None], ...] = ()
    series_after_history: str | None = None

    @property
    def id(self) -> str:
        return f"{int(self.winner)}-over-{int(self.loser)}"


R = RowError
CASES = [
    Case(
        R.MALFORMED_ROW,
        R.MISSING_COLUMNS,
        rows=(
            (f"{SAMPLE_MS},T1", R.MISSING_COLUMNS),
            # Two cells, and a quote left open to the end of the file.
            (f'{SAMPLE_MS},"T1', R.MALFORMED_ROW),
        ),
    ),
    Case(
        R.MISSING_COLUMNS,
        R.MISSING_VALUE,
        rows=(
            (f"{SAMPLE_MS},,{ALICE},CODE", R.MISSING_VALUE),  # the till is empty
            (f"{SAMPLE_MS},", R.MISSING_COLUMNS),  # empty till, and no mobile or coupon column
        ),
    ),
    Case(
        R.MISSING_VALUE,
        R.VALUE_TOO_LONG,
        rows=(
            (row(details="d" * 1001), R.VALUE_TOO_LONG),
            (row(till="", details="d" * 1001), R.MISSING_VALUE),
        ),
    ),
    Case(
        R.VALUE_TOO_LONG,
        R.INVALID_IDENTIFIER,
        rows=(
            (row(mobile="not-a-mobile"), R.INVALID_IDENTIFIER),
            (row(mobile="not-a-mobile", till="T" * 101), R.VALUE_TOO_LONG),
        ),
    ),
    Case(
        R.INVALID_IDENTIFIER,
        R.INVALID_REDEMPTION_DATE,
        rows=(
            (row(date="1.60313E+12"), R.INVALID_REDEMPTION_DATE),
            (row(date="1.60313E+12", mobile="9.98877E+09"), R.INVALID_IDENTIFIER),
        ),
    ),
    Case(
        R.INVALID_REDEMPTION_DATE,
        R.CUSTOMER_NOT_FOUND,
        rows=(
            (row(mobile=NOBODY), R.CUSTOMER_NOT_FOUND),
            (row(mobile=NOBODY, date=ms(2000, 1, 1) - 1), R.INVALID_REDEMPTION_DATE),
        ),
    ),
    Case(
        R.CUSTOMER_NOT_FOUND,
        R.COUPON_NOT_FOUND,
        rows=(
            (row(code="NOPE"), R.COUPON_NOT_FOUND),
            (row(mobile=NOBODY, code="NOPE"), R.CUSTOMER_NOT_FOUND),
        ),
    ),
    Case(
        R.COUPON_NOT_FOUND,
        R.SERIES_NOT_VALID_ON_DATE,
        series={"valid_from": datetime(2021, 1, 1, tzinfo=UTC)},
        rows=((row(), R.SERIES_NOT_VALID_ON_DATE), (row(code="NOPE"), R.COUPON_NOT_FOUND)),
    ),
    Case(
        R.COUPON_REVOKED,
        R.COUPON_NOT_ISSUED_TO_CUSTOMER,
        coupons=(Coupon("CODE", BOB, revoked=True), Coupon("OTHER", BOB)),
        rows=((row(code="OTHER"), R.COUPON_NOT_ISSUED_TO_CUSTOMER), (row(), R.COUPON_REVOKED)),
    ),
    Case(
        R.COUPON_NOT_ISSUED_TO_CUSTOMER,
        R.SERIES_NOT_VALID_ON_DATE,
        series={"valid_from": datetime(2021, 1, 1, tzinfo=UTC)},
        coupons=(Coupon("CODE", BOB), Coupon("OTHER", ALICE)),
        rows=(
            (row(code="OTHER"), R.SERIES_NOT_VALID_ON_DATE),
            (row(), R.COUPON_NOT_ISSUED_TO_CUSTOMER),
        ),
    ),
    Case(
        R.SERIES_NOT_VALID_ON_DATE,
        R.COUPON_EXPIRED,
        # The coupon expired before the series even began.
        series={"valid_from": datetime(2021, 1, 1, tzinfo=UTC)},
        coupons=(Coupon(expires_at=datetime(2020, 1, 1, tzinfo=UTC)),),
        rows=((row(date=ms(2021, 3, 1)), R.COUPON_EXPIRED), (row(), R.SERIES_NOT_VALID_ON_DATE)),
    ),
    Case(
        R.COUPON_EXPIRED,
        R.TILL_NOT_ALLOWED,
        series={"allowed_till_ids": ["T2"]},
        coupons=(Coupon(expires_at=datetime(2020, 6, 1, tzinfo=UTC)),),
        rows=((row(date=ms(2020, 3, 1)), R.TILL_NOT_ALLOWED), (row(), R.COUPON_EXPIRED)),
    ),
    Case(
        R.TILL_NOT_ALLOWED,
        R.DUPLICATE_REDEMPTION,
        # Till T1 redeemed, then the series is restricted to T2: the same row again is both
        # a duplicate and from a till no longer allowed.
        history=((row(), None), (row(), R.DUPLICATE_REDEMPTION)),
        series_after_history="allowed_till_ids = ARRAY['T2']",
        rows=((row(), R.TILL_NOT_ALLOWED),),
    ),
    Case(
        R.DUPLICATE_REDEMPTION,
        R.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED,
        history=((row(), None),),
        rows=(
            (row(date=SAMPLE_MS + 1), R.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED),
            (row(), R.DUPLICATE_REDEMPTION),
        ),
    ),
    Case(
        R.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED,
        R.COUPON_ALREADY_REDEEMED,
        series={"any_user": True},
        history=((row(), None),),
        rows=(
            (row(mobile=BOB, date=SAMPLE_MS + 1), R.COUPON_ALREADY_REDEEMED),
            (row(date=SAMPLE_MS + 2), R.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED),
        ),
    ),
    Case(
        R.COUPON_ALREADY_REDEEMED,
        R.CUSTOMER_SERIES_LIMIT_REACHED,
        series={
            "any_user": True,
            "same_user_multiple_redeem": True,
            "max_redemptions_per_customer": 1,
        },
        coupons=(Coupon("CODE"), Coupon("OTHER")),
        history=((row(), None),),
        rows=(
            (row(code="OTHER", date=SAMPLE_MS + 1), R.CUSTOMER_SERIES_LIMIT_REACHED),
            (row(date=SAMPLE_MS + 2), R.COUPON_ALREADY_REDEEMED),
        ),
    ),
    Case(
        R.REDEMPTION_LIMIT_REACHED,
        R.CUSTOMER_SERIES_LIMIT_REACHED,
        series={
            "any_user": True,
            "same_user_multiple_redeem": True,
            "max_redemptions_per_coupon": 2,
            "max_redemptions_per_customer": 2,
        },
        coupons=(Coupon("CODE"), Coupon("OTHER")),
        history=((row(), None), (row(date=SAMPLE_MS + 1), None)),
        rows=(
            (row(code="OTHER", date=SAMPLE_MS + 2), R.CUSTOMER_SERIES_LIMIT_REACHED),
            (row(date=SAMPLE_MS + 3), R.REDEMPTION_LIMIT_REACHED),
        ),
    ),
]


def run(org_id: int, series_id: int, lines: list[str]) -> list[int | None]:
    """Run a job over `lines` in-process; each data row's error code (None: redeemed)."""
    job = create_job(org_id, series_id, [HEADER_LINE, *lines], upload_headers=HEADERS)
    assert pipeline.run_slice(job, slice_seconds=60) is pipeline.SliceResult.DONE
    with admin_transaction() as session:
        codes: dict[int, int] = dict(
            session.execute(
                text("SELECT row_number, code FROM job_row_errors WHERE job_id = :j"), {"j": job}
            ).all()
        )
        redeemed = set(
            session.execute(
                text("SELECT row_number FROM redemptions WHERE job_id = :j"), {"j": job}
            ).scalars()
        )
        status = session.execute(
            text("SELECT status FROM upload_jobs WHERE id = :j"), {"j": job}
        ).scalar_one()
    assert status in ("COMPLETED", "COMPLETED_WITH_ERRORS")
    numbers = range(2, len(lines) + 2)
    # A row either failed or was redeemed, never both, never neither.
    assert redeemed == {n for n in numbers if n not in codes}
    return [codes.get(n) for n in numbers]


def test_the_cases_are_in_the_documented_order_and_show_both_rules() -> None:
    # A case whose winner comes after its loser would "prove" the wrong order; one without a
    # control failing with the loser would not show that its last row breaks that rule.
    for case in CASES:
        assert PRECEDENCE.index(case.winner) < PRECEDENCE.index(case.loser), case.id
        assert case.rows[-1][1] is case.winner, case.id
        controls = [code for _, code in (*case.history, *case.rows[:-1])]
        assert case.loser in controls, case.id
    assert [int(code) for code in PRECEDENCE] == [
        807, 801, 802, 804, 805, 729, 701, 702, 660, 703, 712, 713, 735, 790, 716, 711, 714, 736
    ]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_row_breaking_two_rules_fails_with_the_higher_one(
    org: tuple[int, str], case: Case
) -> None:
    org_id = org[0]
    series = create_series(org_id, **case.series)  # type: ignore[arg-type]
    customers = {mobile: create_customer(org_id, mobile=mobile) for mobile in (ALICE, BOB)}
    for coupon in case.coupons:
        create_coupon(
            org_id,
            series,
            coupon.code,
            issued_to=None if coupon.issued_to is None else customers[coupon.issued_to],
            expires_at=coupon.expires_at,
            revoked_at=datetime(2020, 1, 1, tzinfo=UTC) if coupon.revoked else None,
        )
    if case.history:
        lines = [line for line, _ in case.history]
        assert run(org_id, series, lines) == [code for _, code in case.history]
    if case.series_after_history:
        with admin_transaction() as session:
            session.execute(
                text(f"UPDATE coupon_series SET {case.series_after_history} WHERE id = :id"),
                {"id": series},
            )

    outcome = run(org_id, series, [line for line, _ in case.rows])

    *controls, last = outcome
    assert controls == [code for _, code in case.rows[:-1]]  # the lower rule alone
    assert last == case.winner, f"expected {case.winner!r}, got {last}"
