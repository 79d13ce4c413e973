"""Request and response bodies of the reference-data API (camelCase JSON, as in DESIGN.md)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from core import reference
from core.limits import MAX_BATCH
from core.models import CouponSeries, Redemption


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


class RequestBody(BaseModel):
    # Strict: `true` is not a limit and `"5"` not a number. Unknown fields are refused, because
    # a misspelt field silently ignored would store something the client did not ask for.
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid", strict=True)


class ResponseBody(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )


# Customers


class CustomerFields(BaseModel):
    """The shape of a customer, in and out (core.reference.CustomerFields)."""

    external_id: str | None = None
    mobile: str | None = None
    email: str | None = None
    name: str | None = None


class CustomerIn(CustomerFields, RequestBody):
    def to_domain(self) -> reference.CustomerInput:
        return reference.CustomerInput(**self.model_dump())


class CustomersIn(RequestBody):
    customers: list[CustomerIn] = Field(max_length=MAX_BATCH)


class CustomerOut(CustomerFields, ResponseBody):
    user_id: int

    @classmethod
    def of(cls, view: reference.CustomerView) -> CustomerOut:
        return cls(**asdict(view))


class CustomersOut(ResponseBody):
    customers: list[CustomerOut]


# Coupon series


class SeriesIn(RequestBody):
    name: str
    # Absent means the default; an explicit null means unlimited.
    max_redemptions_per_coupon: int | None = 1
    same_user_multiple_redeem: bool = False
    max_redemptions_per_customer: int | None = None
    # Strings, parsed by core: pydantic would also take epoch numbers, a guess at the unit.
    valid_from: str | None = None
    valid_till: str | None = None
    any_user: bool = False
    allowed_till_ids: list[str] | None = None

    def to_domain(self) -> reference.SeriesInput:
        return reference.SeriesInput(
            name=self.name,
            max_redemptions_per_coupon=self.max_redemptions_per_coupon,
            same_user_multiple_redeem=self.same_user_multiple_redeem,
            max_redemptions_per_customer=self.max_redemptions_per_customer,
            valid_from=self.valid_from,
            valid_till=self.valid_till,
            any_user=self.any_user,
            allowed_till_ids=self.allowed_till_ids,
        )


class SeriesOut(ResponseBody):
    id: int
    name: str
    max_redemptions_per_coupon: int | None
    same_user_multiple_redeem: bool
    max_redemptions_per_customer: int | None
    valid_from: datetime | None
    valid_till: datetime | None
    any_user: bool
    allowed_till_ids: list[str] | None
    created_at: datetime

    @classmethod
    def of(cls, series: CouponSeries) -> SeriesOut:
        return cls(
            id=series.id,
            name=series.name,
            max_redemptions_per_coupon=series.max_redemptions_per_coupon,
            same_user_multiple_redeem=series.same_user_multiple_redeem,
            max_redemptions_per_customer=series.max_redemptions_per_customer,
            valid_from=_utc(series.valid_from),
            valid_till=_utc(series.valid_till),
            any_user=series.any_user,
            allowed_till_ids=series.allowed_till_ids,
            created_at=series.created_at.astimezone(UTC),
        )


class SeriesPageOut(ResponseBody):
    """A page of series, newest first; `nextCursor` fetches the next one (null: no more)."""

    items: list[SeriesOut]
    next_cursor: str | None


# Coupons


class CustomerRefIn(RequestBody):
    """Exactly one identifier; core says which is missing or extra, naming the item."""

    user_id: int | None = None
    mobile: str | None = None
    email: str | None = None
    external_id: str | None = None

    def to_domain(self) -> reference.CustomerRef:
        return reference.CustomerRef(self.user_id, self.mobile, self.email, self.external_id)


class CouponIn(RequestBody):
    code: str
    issued_to: CustomerRefIn | None = None
    expires_at: str | None = None

    def to_domain(self) -> reference.CouponInput:
        issued_to = self.issued_to.to_domain() if self.issued_to is not None else None
        return reference.CouponInput(self.code, issued_to, self.expires_at)


class CouponsIn(RequestBody):
    coupons: list[CouponIn] = Field(max_length=MAX_BATCH)


class CreatedCouponOut(ResponseBody):
    coupon_id: int
    code: str


class CreatedCouponsOut(ResponseBody):
    coupons: list[CreatedCouponOut]


class IssuedToOut(ResponseBody):
    user_id: int


class RedemptionOut(ResponseBody):
    redemption_id: int
    user_id: int
    # The upload's column name; its `redeemedAt` column is the till (`allowedTillIds` speaks of
    # tills too, and a till called `redeemedAt` in JSON would read as a time).
    redeemed_date_in_millis: int
    till_id: str
    bill_id: str
    bill_number: str
    details: str | None
    job_id: int | None
    row_number: int | None
    created_at: datetime

    @classmethod
    def of(cls, redemption: Redemption) -> RedemptionOut:
        return cls(
            redemption_id=redemption.id,
            user_id=redemption.customer_id,
            redeemed_date_in_millis=redemption.redeemed_ms,
            till_id=redemption.till_id,
            bill_id=redemption.bill_id,
            bill_number=redemption.bill_number,
            details=redemption.details,
            job_id=redemption.job_id,
            row_number=redemption.row_number,
            created_at=redemption.created_at.astimezone(UTC),
        )


class CouponOut(ResponseBody):
    coupon_id: int
    series_id: int
    code: str
    issued_to: IssuedToOut | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    status: reference.CouponStatus
    # Counts every redemption; `redemptions` holds the newest ones only, newest first.
    redemption_count: int
    redemptions: list[RedemptionOut]

    @classmethod
    def of(cls, view: reference.CouponView) -> CouponOut:
        coupon = view.coupon
        customer_id = coupon.issued_to_customer_id
        return cls(
            coupon_id=coupon.id,
            series_id=coupon.series_id,
            code=coupon.code,
            issued_to=IssuedToOut(user_id=customer_id) if customer_id is not None else None,
            expires_at=_utc(coupon.expires_at),
            revoked_at=_utc(coupon.revoked_at),
            created_at=coupon.created_at.astimezone(UTC),
            status=view.status,
            redemption_count=coupon.redemption_count,
            redemptions=[RedemptionOut.of(r) for r in view.redemptions],
        )
