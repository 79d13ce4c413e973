"""The demo data `make run` starts with: what the API page's two sample files redeem."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from core import keys
from core.db import set_org
from core.models import Coupon, CouponCounter, CouponSeries, Customer, Org, Redemption

ORG_NAME = "demo"
SERIES_NAME = "demo"
SERIES_VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)
CUSTOMER_ID = 23599838  # sample 1's userId
CUSTOMER_MOBILE = "9988776655"  # sample 2's mobile
COUPON_ID = 23456  # sample 1's couponId
COUPON_ID_CODE = "DEMO23456"
COUPON_CODE = "ABCDEF1"  # sample 2's coupon code


class DemoSeedError(RuntimeError):
    """The database holds something the demo data cannot live beside."""


@dataclass(frozen=True)
class DemoData:
    org_id: int
    api_key: str  # shown once: only its hash is stored
    api_key_id: int
    series_id: int
    customer_id: int
    customer_mobile: str
    coupon_id: int
    coupon_id_code: str
    coupon_code_id: int
    coupon_code: str


def seed_demo(session: Session) -> DemoData:
    """Create or repair the demo org's data and issue it a fresh API key. Flushes, never commits.

    Safe to run at every start: existing rows are reused and put back in their demo state, and
    the demo coupons lose their redemptions, so that both sample files redeem again.
    """
    org = session.execute(select(Org).where(Org.name == ORG_NAME)).scalar_one_or_none()
    if org is None:
        org, issued = keys.create_org(session, ORG_NAME)
    else:
        issued = keys.create_key(session, org.id, label="demo")
    set_org(session, org.id)

    series = _series(session, org.id)
    customer = _customer(session, org.id)
    _move_sequence_past(session, "customers", CUSTOMER_ID)
    by_id = _coupon_by_id(session, org.id, series.id, customer.id)
    session.flush()
    # Before the next coupon takes a generated id, which could otherwise be 23456 itself.
    _move_sequence_past(session, "coupons", COUPON_ID)
    by_code = _coupon_by_code(session, org.id, series.id, customer.id)
    session.flush()

    demo_coupons = [by_id.id, by_code.id]
    session.execute(delete(Redemption).where(Redemption.coupon_id.in_(demo_coupons)))
    session.execute(delete(CouponCounter).where(CouponCounter.coupon_id.in_(demo_coupons)))
    session.flush()
    return DemoData(
        org_id=org.id,
        api_key=issued.key,
        api_key_id=issued.id,
        series_id=series.id,
        customer_id=customer.id,
        customer_mobile=CUSTOMER_MOBILE,
        coupon_id=by_id.id,
        coupon_id_code=by_id.code,
        coupon_code_id=by_code.id,
        coupon_code=by_code.code,
    )


def _series(session: Session, org_id: int) -> CouponSeries:
    series = session.execute(
        select(CouponSeries)
        .where(CouponSeries.org_id == org_id, CouponSeries.name == SERIES_NAME)
        .order_by(CouponSeries.id)
        .limit(1)
    ).scalar_one_or_none()
    if series is None:
        series = CouponSeries(org_id=org_id, name=SERIES_NAME)
        session.add(series)
    # The API's defaults, spelled out: the ORM's would leave max_redemptions_per_coupon NULL
    # (unlimited), and a series edited since the last start is put back.
    series.max_redemptions_per_coupon = 1
    series.same_user_multiple_redeem = False
    series.max_redemptions_per_customer = None
    series.valid_from = SERIES_VALID_FROM
    series.valid_till = None
    series.any_user = False
    series.allowed_till_ids = None
    session.flush()
    return series


def _customer(session: Session, org_id: int) -> Customer:
    customer = session.get(Customer, CUSTOMER_ID)
    if customer is not None and customer.org_id != org_id:
        raise DemoSeedError(
            f"customer id {CUSTOMER_ID} belongs to org {customer.org_id}, not to the demo org"
        )
    holder = session.execute(
        select(Customer).where(Customer.org_id == org_id, Customer.mobile == CUSTOMER_MOBILE)
    ).scalar_one_or_none()
    if holder is not None and holder.id != CUSTOMER_ID:
        raise DemoSeedError(
            f"mobile {CUSTOMER_MOBILE} belongs to demo customer {holder.id}, not {CUSTOMER_ID}"
        )
    if customer is None:
        customer = Customer(id=CUSTOMER_ID, org_id=org_id)
        session.add(customer)
    customer.mobile = CUSTOMER_MOBILE
    session.flush()
    return customer


def _coupon_by_id(session: Session, org_id: int, series_id: int, customer_id: int) -> Coupon:
    coupon = session.get(Coupon, COUPON_ID)
    if coupon is not None and coupon.org_id != org_id:
        raise DemoSeedError(
            f"coupon id {COUPON_ID} belongs to org {coupon.org_id}, not to the demo org"
        )
    if coupon is None:
        coupon = Coupon(id=COUPON_ID, org_id=org_id, series_id=series_id, code=COUPON_ID_CODE)
        session.add(coupon)
    coupon.series_id = series_id
    coupon.code = COUPON_ID_CODE
    _issue(coupon, customer_id)
    return coupon


def _coupon_by_code(session: Session, org_id: int, series_id: int, customer_id: int) -> Coupon:
    coupon = session.execute(
        select(Coupon).where(Coupon.series_id == series_id, Coupon.code == COUPON_CODE)
    ).scalar_one_or_none()
    if coupon is None:
        coupon = Coupon(org_id=org_id, series_id=series_id, code=COUPON_CODE)
        session.add(coupon)
    _issue(coupon, customer_id)
    return coupon


def _issue(coupon: Coupon, customer_id: int) -> None:
    coupon.issued_to_customer_id = customer_id
    coupon.expires_at = None
    coupon.revoked_at = None


def _move_sequence_past(session: Session, table: str, explicit_id: int) -> None:
    """Make the table's identity sequence hand out ids above an explicitly inserted one.

    Forward only: another org's rows may be invisible here (row-level security), so the
    sequence's own position, not MAX(id), is what must not go back.
    """
    session.execute(
        text(
            "SELECT setval(seq, GREATEST(:explicit_id, COALESCE(pg_sequence_last_value(seq), 0)))"
            " FROM CAST(pg_get_serial_sequence(:table, 'id') AS regclass) AS seq"
        ),
        {"explicit_id": explicit_id, "table": table},
    )
