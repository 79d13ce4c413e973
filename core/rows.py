"""From a CSV record to a redemption candidate: mapping, normalising and the row-local checks.

Checks that need only the row itself (807, 801, 802, 804, 805, 729) run here, in Python; the
ones that need the database run set-based in core/apply.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from core.codes import RowError
from core.identifiers import normalise_email, normalise_mobile, parse_positive_int
from core.limits import MAX_DETAILS, MAX_IDENTIFIER


class CustomerIdentifier(StrEnum):
    MOBILE = "MOBILE"
    EXTERNAL_ID = "EXTERNAL_ID"
    EMAIL = "EMAIL"
    USER_ID = "USER_ID"

    @property
    def key(self) -> str:
        return _CUSTOMER_KEYS[self]


class CouponIdentifier(StrEnum):
    COUPON_ID = "COUPON_ID"
    COUPON_CODE = "COUPON_CODE"

    @property
    def key(self) -> str:
        return "couponId" if self is CouponIdentifier.COUPON_ID else "couponCode"


_CUSTOMER_KEYS = {
    CustomerIdentifier.MOBILE: "mobile",
    CustomerIdentifier.EXTERNAL_ID: "externalId",
    CustomerIdentifier.EMAIL: "email",
    CustomerIdentifier.USER_ID: "userId",
}

COLUMN_KEYS = (
    "mobile",
    "externalId",
    "email",
    "userId",
    "couponId",
    "couponCode",
    "redeemedDateInMillis",
    "redeemedAt",
    "billId",
    "billNumber",
    "details",
)
# Column of the customers table that each non-userId customer key matches.
CUSTOMER_COLUMNS = {"mobile": "mobile", "externalId": "external_id", "email": "email"}


def mandatory_keys(customer: CustomerIdentifier, coupon: CouponIdentifier) -> tuple[str, ...]:
    """The keys every upload must map (DESIGN.md): the enums' keys, the date and the till."""
    return (customer.key, coupon.key, "redeemedDateInMillis", "redeemedAt")


# 2000-01-01T00:00:00Z: nothing earlier is a plausible point-of-sale redemption.
MIN_REDEEMED_MS = 946_684_800_000
MAX_FUTURE_MS = 5 * 60 * 1000
# Cells of a failed row kept for the report: longer ones are cut (they fail 804 anyway).
MAX_CELL_KEPT = 10_000

_ESCAPED = re.compile(r"'[=+\-@\t\r]")
_DIGITS = re.compile(r"[0-9]{1,18}")


def clean(cell: str) -> str:
    """Trim, and drop the `'` that the error report puts before formula-like cells.

    The escape is looked for before trimming too: the report writes a cell of a tab or a CR
    alone as `'<tab>`, which trimmed first would leave a bare `'` where the original was blank.
    """
    # `[:1] == "'"` first: the regex only for the rare cell that starts with a quote (it was a
    # tenth of the worker's parsing CPU when called on every cell).
    if cell[:1] == "'" and _ESCAPED.match(cell):
        return cell[1:].strip()
    value = cell.strip()
    if value[:1] == "'" and _ESCAPED.match(value):
        value = value[1:].strip()
    return value


@dataclass(frozen=True, slots=True)
class Mapping:
    """Which column holds which key, and which keys decide the customer and the coupon."""

    columns: dict[str, int]
    customer: CustomerIdentifier
    coupon: CouponIdentifier

    @property
    def mandatory(self) -> tuple[str, ...]:
        return mandatory_keys(self.customer, self.coupon)


@dataclass(slots=True)
class Candidate:
    """A row that passed the row-local checks, waiting for the database checks."""

    row_number: int
    user_id: int | None  # a non-empty userId decides alone
    customer_key: str | None  # else the normalised value of the enum's key
    coupon_id: int | None  # a non-empty couponId decides alone
    coupon_code: str | None
    redeemed_ms: int
    till_id: str
    bill_id: str
    bill_number: str
    details: str | None
    cells: list[str]


@dataclass(slots=True)
class Failure:
    row_number: int
    code: RowError
    message: str
    cells: list[str]


def report_cells(cells: list[str], width: int) -> list[str]:
    """The raw cells kept for the report: cut to its width, each cut to a sane length."""
    return [c if len(c) <= MAX_CELL_KEPT else c[:MAX_CELL_KEPT] for c in cells[:width]]


class RowChecker:
    """Applies the row-local checks of one job to its records."""

    def __init__(self, mapping: Mapping, created_at_ms: int, report_width: int) -> None:
        self.mapping = mapping
        self.report_width = report_width
        self.latest_ms = created_at_ms + MAX_FUTURE_MS
        cols = mapping.columns
        self.max_mandatory = max(cols[k] for k in mapping.mandatory)
        self.customer_key = mapping.customer.key
        self.coupon_key = mapping.coupon.key
        # userId and couponId win when present, so they are read even when not the enum's.
        self.user_col = cols.get("userId")
        self.coupon_id_col = cols.get("couponId")
        self.mapped = sorted(cols.items(), key=lambda kv: kv[1])

    def check(self, number: int, cells: list[str], damage: str | None) -> Candidate | Failure:
        if damage is not None:
            return self._fail(number, RowError.MALFORMED_ROW, f"malformed row: {damage}", cells)
        if len(cells) <= self.max_mandatory:
            missing = [k for k in self.mapping.mandatory if self.mapping.columns[k] >= len(cells)]
            return self._fail(
                number,
                RowError.MISSING_COLUMNS,
                f"the row has {len(cells)} columns; missing {', '.join(missing)}",
                cells,
            )
        width = len(cells)
        values = {key: clean(cells[i]) if i < width else "" for key, i in self.mapped}

        user_raw = values.get("userId", "")
        customer_raw = user_raw or values[self.customer_key]
        coupon_id_raw = values.get("couponId", "")
        coupon_raw = coupon_id_raw or values[self.coupon_key]
        date_raw = values["redeemedDateInMillis"]
        till = values["redeemedAt"]
        empty = [
            name
            for name, value in (
                (self.customer_key, customer_raw),
                (self.coupon_key, coupon_raw),
                ("redeemedDateInMillis", date_raw),
                ("redeemedAt", till),
            )
            if not value
        ]
        if empty:
            return self._fail(
                number, RowError.MISSING_VALUE, f"empty mandatory field: {', '.join(empty)}", cells
            )

        for key, value in values.items():
            limit = MAX_DETAILS if key == "details" else MAX_IDENTIFIER
            if len(value) > limit:
                return self._fail(
                    number,
                    RowError.VALUE_TOO_LONG,
                    f"{key} is {len(value)} characters long; at most {limit} allowed",
                    cells,
                )

        user_id: int | None = None
        customer_key: str | None = None
        if user_raw:
            user_id = parse_positive_int(user_raw)
            if user_id is None:
                return self._invalid(number, "userId", user_raw, "a positive integer", cells)
        elif self.customer_key == "mobile":
            customer_key = normalise_mobile(customer_raw)
            if customer_key is None:
                return self._invalid(
                    number, "mobile", customer_raw, "6 to 15 digits (no scientific notation)", cells
                )
        elif self.customer_key == "email":
            customer_key = normalise_email(customer_raw)
        elif self.customer_key == "externalId":
            customer_key = customer_raw
        else:  # USER_ID with an empty userId was caught as 802 above
            raise AssertionError("unreachable")

        coupon_id: int | None = None
        coupon_code: str | None = None
        if coupon_id_raw:
            coupon_id = parse_positive_int(coupon_id_raw)
            if coupon_id is None:
                return self._invalid(number, "couponId", coupon_id_raw, "a positive integer", cells)
        else:
            coupon_code = coupon_raw

        if not _DIGITS.fullmatch(date_raw):
            return self._fail(
                number,
                RowError.INVALID_REDEMPTION_DATE,
                f"redeemedDateInMillis {date_raw!r} is not an integer number of milliseconds",
                cells,
            )
        redeemed_ms = int(date_raw)
        if redeemed_ms < MIN_REDEEMED_MS or redeemed_ms > self.latest_ms:
            return self._fail(
                number,
                RowError.INVALID_REDEMPTION_DATE,
                f"redeemedDateInMillis {redeemed_ms} is before 2000-01-01 or in the future",
                cells,
            )

        details = values.get("details") or None
        return Candidate(
            row_number=number,
            user_id=user_id,
            customer_key=customer_key,
            coupon_id=coupon_id,
            coupon_code=coupon_code,
            redeemed_ms=redeemed_ms,
            till_id=till,
            bill_id=values.get("billId", ""),
            bill_number=values.get("billNumber", ""),
            details=details,
            cells=cells,
        )

    def _invalid(
        self, number: int, key: str, value: str, expected: str, cells: list[str]
    ) -> Failure:
        return self._fail(
            number, RowError.INVALID_IDENTIFIER, f"{key} {value!r} is not {expected}", cells
        )

    def _fail(self, number: int, code: RowError, message: str, cells: list[str]) -> Failure:
        return Failure(number, code, message, report_cells(cells, self.report_width))

    def failure_of(self, candidate: Candidate, code: RowError, message: str) -> Failure:
        return self._fail(candidate.row_number, code, message, candidate.cells)
