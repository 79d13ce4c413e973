"""Coupons: made in a series (issued to a customer or not), read, revoked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ColumnElement, Text, and_, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DomainError, ErrorKind, not_found
from core.limits import MAX_ID, MAX_IDENTIFIER
from core.models import Coupon, CouponSeries, Customer, Redemption
from core.reference.series import get_series
from core.reference.validate import (
    Problems,
    any_of,
    check_batch,
    clean_email,
    clean_instant,
    clean_mobile,
    clean_text,
)

REDEMPTIONS_SHOWN = 100  # a coupon shows its latest redemptions, at most this many


@dataclass(frozen=True)
class CustomerRef:
    """A customer named by exactly one of its identifiers."""

    user_id: int | None = None
    mobile: str | None = None
    email: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class CouponInput:
    code: str
    issued_to: CustomerRef | None = None
    expires_at: datetime | str | None = None


@dataclass(frozen=True)
class CreatedCoupon:
    coupon_id: int
    code: str


# A normalised reference: (JSON name of the identifier, its value).
_Ref = tuple[str, int | str]
_REF_COLUMNS = {
    "userId": Customer.id,
    "mobile": Customer.mobile,
    "email": Customer.email,
    "externalId": Customer.external_id,
}


def _clean_ref(ref: CustomerRef | None, field: str, problems: Problems) -> _Ref | None:
    if ref is None:
        return None
    given = [
        (name, value)
        for name, value in (
            ("userId", ref.user_id),
            ("mobile", ref.mobile),
            ("email", ref.email),
            ("externalId", ref.external_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        problems.add(field, "give exactly one of userId, mobile, email, externalId")
        return None
    name, value = given[0]
    subfield = f"{field}.{name}"
    cleaned: int | str | None
    if isinstance(value, int):
        cleaned = value if 1 <= value <= MAX_ID else None
        if cleaned is None:
            problems.add(subfield, "not a userId")
        return ("userId", cleaned) if cleaned is not None else None
    before = problems.count
    if name == "mobile":
        cleaned = clean_mobile(value, subfield, problems)
    elif name == "email":
        cleaned = clean_email(value, subfield, problems)
    else:
        cleaned = clean_text(value, subfield, problems, MAX_IDENTIFIER)
    if cleaned is None:
        if problems.count == before:
            problems.add(subfield, "must not be empty")
        return None
    return (name, cleaned)


def _resolve_refs(
    session: Session, org_id: int, refs: Sequence[_Ref | None], problems: Problems
) -> list[int | None]:
    """The customer id each reference names, in one query; unknown ones are problems."""
    wanted: dict[str, set[int | str]] = {}
    for ref in refs:
        if ref is not None:
            wanted.setdefault(ref[0], set()).add(ref[1])
    found: dict[_Ref, int] = {}
    if wanted:
        conditions = [
            _REF_COLUMNS[name] == any_of(list(values), BigInteger if name == "userId" else Text)
            for name, values in wanted.items()
        ]
        rows = session.execute(
            select(Customer.id, Customer.mobile, Customer.email, Customer.external_id).where(
                Customer.org_id == org_id, or_(*conditions)
            )
        ).all()
        for row in rows:
            found[("userId", row.id)] = row.id
            for name in ("mobile", "email"):
                if getattr(row, name) is not None:
                    found[(name, getattr(row, name))] = row.id
            if row.external_id is not None:
                found[("externalId", row.external_id)] = row.id
    ids: list[int | None] = []
    for position, ref in enumerate(refs):
        if ref is None:
            ids.append(None)
            continue
        customer_id = found.get(ref)
        if customer_id is None:
            problems.add(
                f"coupons[{position}].issuedTo.{ref[0]}", f"no customer with {ref[0]} {ref[1]!r}"
            )
        ids.append(customer_id)
    return ids


_INSERT_COUPONS = text(
    """
    INSERT INTO coupons (org_id, series_id, code, issued_to_customer_id, expires_at)
    SELECT :org_id, :series_id, v.code, v.customer_id, v.expires_at
    FROM unnest(
        CAST(:codes AS text[]), CAST(:customer_ids AS bigint[]),
        CAST(:expires_at AS timestamptz[])
    ) WITH ORDINALITY AS v(code, customer_id, expires_at, position)
    ORDER BY v.position
    RETURNING id, code
    """
)


def create_coupons(
    session: Session, org_id: int, series_id: int, items: Sequence[CouponInput]
) -> list[CreatedCoupon]:
    """Create a batch of coupons in one of the org's series; all or none.

    A code repeated within the batch is the batch's fault (422); a code the series already holds
    clashes with stored data (409).
    """
    check_batch(len(items), "coupons")
    get_series(session, org_id, series_id)
    if not items:
        return []

    problems = Problems()
    first_seen: dict[str, int] = {}
    codes: list[str] = []
    refs: list[_Ref | None] = []
    expiries: list[datetime | None] = []
    for position, item in enumerate(items):
        prefix = f"coupons[{position}]"
        code = clean_text(item.code, f"{prefix}.code", problems, MAX_IDENTIFIER)
        if code is None:
            if item.code.strip() == "":
                problems.add(f"{prefix}.code", "must not be empty")
        elif code in first_seen:
            problems.add(f"{prefix}.code", f"{code!r} repeats coupons[{first_seen[code]}].code")
        else:
            first_seen[code] = position
        codes.append(code or "")
        refs.append(_clean_ref(item.issued_to, f"{prefix}.issuedTo", problems))
        expiries.append(clean_instant(item.expires_at, f"{prefix}.expiresAt", problems))
    problems.raise_if_any()

    customer_ids = _resolve_refs(session, org_id, refs, problems)
    problems.raise_if_any()

    taken = set(
        session.scalars(
            select(Coupon.code).where(
                Coupon.series_id == series_id, Coupon.code == any_of(codes, Text)
            )
        )
    )
    if taken:
        clashes = Problems()
        for position, code in enumerate(codes):
            if code in taken:
                clashes.add(f"coupons[{position}].code", f"{code!r} already exists in this series")
        clashes.raise_if_any(ErrorKind.CONFLICT)

    params = {
        "org_id": org_id,
        "series_id": series_id,
        "codes": codes,
        "customer_ids": customer_ids,
        "expires_at": expiries,
    }
    try:
        with session.begin_nested():
            rows = session.execute(_INSERT_COUPONS, params).all()
    except IntegrityError as exc:
        raise DomainError(
            ErrorKind.CONFLICT, "coupon codes were created concurrently: send the batch again"
        ) from exc
    ids = {row.code: row.id for row in rows}
    return [CreatedCoupon(ids[code], code) for code in codes]


class CouponStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"
    REDEEMED = "REDEEMED"  # its redemption limit is used up
    EXPIRED = "EXPIRED"  # past its own expiry or its series' validTill


def coupon_status(coupon: Coupon, series: CouponSeries, now: datetime) -> CouponStatus:
    """What the coupon is at `now`; the first that applies wins."""
    if coupon.revoked_at is not None:
        return CouponStatus.REVOKED
    limit = series.max_redemptions_per_coupon
    if limit is not None and coupon.redemption_count >= limit:
        return CouponStatus.REDEEMED
    # Bounds are inclusive: a coupon is still good at the very instant it expires.
    if (coupon.expires_at is not None and now > coupon.expires_at) or (
        series.valid_till is not None and now > series.valid_till
    ):
        return CouponStatus.EXPIRED
    return CouponStatus.ACTIVE


@dataclass(frozen=True)
class CouponView:
    coupon: Coupon
    status: CouponStatus
    # The newest REDEMPTIONS_SHOWN, newest first; `coupon.redemption_count` counts them all.
    redemptions: list[Redemption]


def _coupon_view(session: Session, org_id: int, coupon: Coupon, now: datetime | None) -> CouponView:
    series = session.get_one(CouponSeries, coupon.series_id)
    redemptions = session.scalars(
        select(Redemption)
        .where(Redemption.coupon_id == coupon.id, Redemption.org_id == org_id)
        .order_by(Redemption.redeemed_ms.desc(), Redemption.id.desc())
        .limit(REDEMPTIONS_SHOWN)
    ).all()
    status = coupon_status(coupon, series, now or datetime.now(UTC))
    return CouponView(coupon, status, list(redemptions))


def get_coupon(
    session: Session, org_id: int, coupon_id: int, *, now: datetime | None = None
) -> CouponView:
    """The org's coupon with its status and latest redemptions; another org's is unknown."""
    return _view_of_one(session, org_id, Coupon.id == coupon_id, now)


def find_coupon(
    session: Session, org_id: int, series_id: int, code: str, *, now: datetime | None = None
) -> CouponView:
    """The coupon with this code in one of the org's series (codes are unique per series)."""
    where = and_(Coupon.series_id == series_id, Coupon.code == code.strip())
    return _view_of_one(session, org_id, where, now)


def _view_of_one(
    session: Session, org_id: int, where: ColumnElement[bool], now: datetime | None
) -> CouponView:
    """The one coupon of the org that `where` finds, as a view; 404 when there is none."""
    coupon = session.execute(
        select(Coupon)
        .where(Coupon.org_id == org_id, where)
        # The counter moves under the worker: never answer from a stale identity map.
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if coupon is None:
        raise not_found("coupon")
    return _coupon_view(session, org_id, coupon, now)


def revoke_coupon(
    session: Session, org_id: int, coupon_id: int, *, now: datetime | None = None
) -> CouponView:
    """Revoke a coupon; revoking it again keeps the time of the first revocation."""
    session.execute(
        update(Coupon)
        .where(Coupon.id == coupon_id, Coupon.org_id == org_id, Coupon.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return get_coupon(session, org_id, coupon_id, now=now)
