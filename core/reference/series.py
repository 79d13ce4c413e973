"""Coupon series: their rules (limits, dates, tills), made and read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import cursors
from core.limits import MAX_COUNT, MAX_DETAILS, MAX_IDENTIFIER
from core.lookup import org_row
from core.models import CouponSeries
from core.reference.validate import (
    Problems,
    clean_instant,
    clean_text,
)

# Coupon series


@dataclass(frozen=True)
class SeriesInput:
    """A new series; the defaults are DESIGN.md's (None on a limit means unlimited)."""

    name: str
    max_redemptions_per_coupon: int | None = 1
    same_user_multiple_redeem: bool = False
    max_redemptions_per_customer: int | None = None
    valid_from: datetime | str | None = None
    valid_till: datetime | str | None = None
    any_user: bool = False
    allowed_till_ids: Sequence[str] | None = None


def _limit(value: int | None, field: str, problems: Problems) -> None:
    if value is not None and not 1 <= value <= MAX_COUNT:
        problems.add(field, f"a positive integer up to {MAX_COUNT}, or null for unlimited")


def _till_ids(values: Sequence[str] | None, problems: Problems) -> list[str] | None:
    if values is None:
        return None
    if not values:
        problems.add("allowedTillIds", "an empty list would refuse every till: null allows any")
        return None
    tills: list[str] = []
    for position, value in enumerate(values):
        field = f"allowedTillIds[{position}]"
        till = clean_text(value, field, problems, MAX_IDENTIFIER)
        if till is None and value.strip() == "":
            problems.add(field, "must not be empty")
        elif till is not None and till not in tills:
            tills.append(till)
    return tills


def create_series(session: Session, org_id: int, spec: SeriesInput) -> CouponSeries:
    problems = Problems()
    name = clean_text(spec.name, "name", problems, MAX_DETAILS)
    if name is None and spec.name.strip() == "":
        problems.add("name", "must not be empty")
    _limit(spec.max_redemptions_per_coupon, "maxRedemptionsPerCoupon", problems)
    _limit(spec.max_redemptions_per_customer, "maxRedemptionsPerCustomer", problems)
    valid_from = clean_instant(spec.valid_from, "validFrom", problems)
    valid_till = clean_instant(spec.valid_till, "validTill", problems)
    if valid_from is not None and valid_till is not None and valid_till < valid_from:
        problems.add("validTill", "before validFrom")
    tills = _till_ids(spec.allowed_till_ids, problems)
    problems.raise_if_any()
    assert name is not None

    series = CouponSeries(
        org_id=org_id,
        name=name,
        max_redemptions_per_coupon=spec.max_redemptions_per_coupon,
        same_user_multiple_redeem=spec.same_user_multiple_redeem,
        max_redemptions_per_customer=spec.max_redemptions_per_customer,
        valid_from=valid_from,
        valid_till=valid_till,
        any_user=spec.any_user,
        allowed_till_ids=tills,
    )
    session.add(series)
    session.flush()
    return series


def get_series(session: Session, org_id: int, series_id: int) -> CouponSeries:
    """The org's series; another org's is as unknown as a missing one."""
    return org_row(session, CouponSeries, org_id, series_id, "coupon series")


def list_series(
    session: Session, org_id: int, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[CouponSeries], str | None]:
    """The org's series, newest first, a page at a time (ids only grow, so id order is age)."""
    query = select(CouponSeries).where(CouponSeries.org_id == org_id)
    if cursor:
        query = query.where(CouponSeries.id < cursors.decode(cursor))
    rows = list(session.execute(query.order_by(CouponSeries.id.desc()).limit(limit + 1)).scalars())
    next_cursor = cursors.encode(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
