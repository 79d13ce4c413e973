"""Row error codes (Capillary's where it has one), in precedence order: the first wins."""

from __future__ import annotations

from enum import IntEnum


class RowError(IntEnum):
    MALFORMED_ROW = 807
    MISSING_COLUMNS = 801
    MISSING_VALUE = 802
    VALUE_TOO_LONG = 804
    INVALID_IDENTIFIER = 805
    INVALID_REDEMPTION_DATE = 729
    CUSTOMER_NOT_FOUND = 701
    COUPON_NOT_FOUND = 702
    COUPON_REVOKED = 660
    COUPON_NOT_ISSUED_TO_CUSTOMER = 703
    SERIES_NOT_VALID_ON_DATE = 712
    COUPON_EXPIRED = 713
    TILL_NOT_ALLOWED = 735
    DUPLICATE_REDEMPTION = 790
    SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED = 716
    COUPON_ALREADY_REDEEMED = 711
    REDEMPTION_LIMIT_REACHED = 714
    CUSTOMER_SERIES_LIMIT_REACHED = 736


# IntEnum iterates in definition order, which is the precedence order of DESIGN.md.
PRECEDENCE: tuple[RowError, ...] = tuple(RowError)


def error_name(code: int) -> str:
    try:
        return RowError(code).name
    except ValueError:
        return "UNKNOWN"
