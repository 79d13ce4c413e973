"""Reference data: the customers, coupon series and coupons that upload rows are checked against.

Every function takes the caller's session and org, flushes and never commits (the caller owns the
transaction), and refuses bad input with a `DomainError` whose field names the offending item, e.g.
`customers[3].mobile`. Field names are the JSON names of DESIGN.md, the vocabulary clients see.
"""

from core.reference.coupons import (
    CouponInput,
    CouponStatus,
    CouponView,
    CreatedCoupon,
    CustomerRef,
    create_coupons,
    find_coupon,
    get_coupon,
    revoke_coupon,
)
from core.reference.customers import CustomerInput, CustomerView, upsert_customers
from core.reference.series import SeriesInput, create_series, get_series, list_series

__all__ = [
    "CouponInput",
    "CouponStatus",
    "CouponView",
    "CreatedCoupon",
    "CustomerInput",
    "CustomerRef",
    "CustomerView",
    "SeriesInput",
    "create_coupons",
    "create_series",
    "find_coupon",
    "get_coupon",
    "get_series",
    "list_series",
    "revoke_coupon",
    "upsert_customers",
]
