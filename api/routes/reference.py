"""The reference-data API: customers, coupon series and coupons (DESIGN.md, Reference data)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import OrgTx
from api.errors import ERROR_RESPONSES
from api.schemas_reference import (
    CouponOut,
    CouponsIn,
    CreatedCouponOut,
    CreatedCouponsOut,
    CustomerOut,
    CustomersIn,
    CustomersOut,
    SeriesIn,
    SeriesOut,
    SeriesPageOut,
)
from core import reference
from core.limits import MAX_ID, MAX_IDENTIFIER, MAX_PAGE

router = APIRouter(tags=["reference data"], responses=ERROR_RESPONSES)

# Bounded so that an id no BIGINT can hold is refused here instead of failing in the database.
SeriesId = Annotated[int, Path(alias="id", gt=0, le=MAX_ID)]
CouponId = Annotated[int, Path(alias="couponId", gt=0, le=MAX_ID)]


@router.post("/v1/customers")
def upsert_customers(body: CustomersIn, tx: OrgTx) -> CustomersOut:
    views = reference.upsert_customers(
        tx.session, tx.org_id, [item.to_domain() for item in body.customers]
    )
    return CustomersOut(customers=[CustomerOut.of(view) for view in views])


@router.post("/v1/coupon-series", status_code=201)
def create_series(body: SeriesIn, tx: OrgTx) -> SeriesOut:
    return SeriesOut.of(reference.create_series(tx.session, tx.org_id, body.to_domain()))


@router.get("/v1/coupon-series")
def list_series(
    tx: OrgTx,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> SeriesPageOut:
    """The org's coupon series, newest first."""
    rows, next_cursor = reference.list_series(tx.session, tx.org_id, limit=limit, cursor=cursor)
    return SeriesPageOut(items=[SeriesOut.of(series) for series in rows], next_cursor=next_cursor)


@router.get("/v1/coupon-series/{id}")
def get_series(series_id: SeriesId, tx: OrgTx) -> SeriesOut:
    return SeriesOut.of(reference.get_series(tx.session, tx.org_id, series_id))


@router.post("/v1/coupon-series/{id}/coupons", status_code=201)
def create_coupons(series_id: SeriesId, body: CouponsIn, tx: OrgTx) -> CreatedCouponsOut:
    created = reference.create_coupons(
        tx.session, tx.org_id, series_id, [item.to_domain() for item in body.coupons]
    )
    return CreatedCouponsOut(
        coupons=[CreatedCouponOut(coupon_id=c.coupon_id, code=c.code) for c in created]
    )


@router.post("/v1/coupons/{couponId}/revoke")
def revoke_coupon(coupon_id: CouponId, tx: OrgTx) -> CouponOut:
    return CouponOut.of(reference.revoke_coupon(tx.session, tx.org_id, coupon_id))


@router.get("/v1/coupons/{couponId}")
def get_coupon(coupon_id: CouponId, tx: OrgTx) -> CouponOut:
    return CouponOut.of(reference.get_coupon(tx.session, tx.org_id, coupon_id))


@router.get("/v1/coupons")
def find_coupon(
    tx: OrgTx,
    series_id: Annotated[int, Query(alias="seriesId", gt=0, le=MAX_ID)],
    code: Annotated[str, Query(min_length=1, max_length=MAX_IDENTIFIER)],
) -> CouponOut:
    """The coupon with this code in this series: codes are unique within a series only."""
    return CouponOut.of(reference.find_coupon(tx.session, tx.org_id, series_id, code))
