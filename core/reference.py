"""Reference data: the customers, coupon series and coupons that upload rows are checked against.

Every function takes the caller's session and org, flushes and never commits (the caller owns the
transaction), and refuses bad input with a `DomainError` whose field names the offending item, e.g.
`customers[3].mobile`. Field names are the JSON names of DESIGN.md, the vocabulary clients see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Text, any_, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import cursors
from core.errors import DomainError, ErrorKind, FieldProblem, not_found
from core.identifiers import normalise_email, normalise_mobile
from core.limits import MAX_BATCH, MAX_COUNT, MAX_DETAILS, MAX_ID, MAX_IDENTIFIER
from core.models import Coupon, CouponSeries, Customer, Redemption

REDEMPTIONS_SHOWN = 100
PROBLEMS_REPORTED = 100

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# (column attribute, JSON name) of the identifiers a customer is matched by.
_IDENTIFIERS = (("external_id", "externalId"), ("mobile", "mobile"), ("email", "email"))


class _Problems:
    """The bad items of a request, collected so that one answer names them all (up to a cap)."""

    def __init__(self) -> None:
        self.reported: list[FieldProblem] = []
        self.count = 0

    def add(self, field: str, message: str) -> None:
        self.count += 1
        if len(self.reported) < PROBLEMS_REPORTED:
            self.reported.append(FieldProblem(field, message))

    def raise_if_any(self, kind: ErrorKind = ErrorKind.UNPROCESSABLE) -> None:
        if not self.reported:
            return
        first = self.reported[0]
        message = f"{first.field}: {first.message}"
        if self.count > 1:
            message += f" (and {self.count - 1} more)"
        raise DomainError(kind, message, list(self.reported))


def _unprocessable(field: str, message: str) -> DomainError:
    return DomainError(
        ErrorKind.UNPROCESSABLE, f"{field}: {message}", [FieldProblem(field, message)]
    )


def _check_batch(size: int, field: str) -> None:
    if size > MAX_BATCH:
        raise _unprocessable(field, f"at most {MAX_BATCH} items per request, not {size}")


def _text(value: str | None, field: str, problems: _Problems, max_length: int) -> str | None:
    """Trimmed text, None when absent or blank (upload rows trim their fields the same way)."""
    if value is None:
        return None
    cleaned = value.strip()
    if not cleaned:
        return None
    if len(cleaned) > max_length:
        problems.add(field, f"at most {max_length} characters")
        return None
    if "\x00" in cleaned:
        problems.add(field, "must not contain NUL characters")
        return None
    return cleaned


def _mobile(value: str | None, field: str, problems: _Problems) -> str | None:
    cleaned = _text(value, field, problems, MAX_IDENTIFIER)
    if cleaned is None:
        return None
    digits = normalise_mobile(cleaned)
    if digits is None:
        problems.add(
            field,
            f"{cleaned!r} is not a mobile number: 6 to 15 digits, with optional spaces, "
            "dashes, dots, brackets and a leading +",
        )
    return digits


def _email(value: str | None, field: str, problems: _Problems) -> str | None:
    cleaned = _text(value, field, problems, MAX_IDENTIFIER)
    if cleaned is None:
        return None
    if not _EMAIL.fullmatch(cleaned):
        problems.add(field, f"{cleaned!r} is not an email address")
        return None
    return normalise_email(cleaned)


def _instant(value: datetime | str | None, field: str, problems: _Problems) -> datetime | None:
    """An ISO 8601 date and time as an aware datetime, UTC when it carries no offset."""
    if value is None:
        return None
    if isinstance(value, str):
        cleaned = value.strip()
        try:
            date.fromisoformat(cleaned)
        except ValueError:
            pass
        else:
            # An inclusive bound given as a bare date could mean its first or its last instant;
            # refuse rather than guess.
            problems.add(field, f"{cleaned!r} has no time: give e.g. {cleaned}T00:00:00Z")
            return None
        try:
            value = datetime.fromisoformat(cleaned)
        except ValueError:
            problems.add(field, f"{cleaned!r} is not an ISO 8601 date and time")
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        problems.add(field, "out of range")
        return None


def _any_of(values: Sequence[Any], element_type: Any) -> Any:
    """`= ANY(:array)`: one bind parameter for a whole batch, however large."""
    return any_(literal(list(values), ARRAY(element_type)))


# Customers


@dataclass(frozen=True)
class CustomerInput:
    external_id: str | None = None
    mobile: str | None = None
    email: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class CustomerView:
    user_id: int
    external_id: str | None
    mobile: str | None
    email: str | None
    name: str | None


@dataclass(frozen=True)
class _CustomerItem:
    """One upsert item, normalised."""

    external_id: str | None
    mobile: str | None
    email: str | None
    name: str | None

    def identifiers(self) -> Iterator[tuple[str, str]]:
        for attr, _ in _IDENTIFIERS:
            value = getattr(self, attr)
            if value is not None:
                yield attr, value


@dataclass(eq=False)
class _CustomerState:
    """A customer as the batch leaves it; compared by identity, like the row it stands for."""

    id: int | None  # None until inserted
    external_id: str | None = None
    mobile: str | None = None
    email: str | None = None
    name: str | None = None
    created_by: int | None = None  # the index of the item that creates it
    loaded: tuple[str | None, ...] | None = None  # the stored values, for existing customers

    def values(self) -> tuple[str | None, ...]:
        return (self.external_id, self.mobile, self.email, self.name)

    def describe(self) -> str:
        if self.id is not None:
            return f"userId {self.id}"
        return f"the customer created by customers[{self.created_by}]"


def _clean_customer(position: int, item: CustomerInput, problems: _Problems) -> _CustomerItem:
    prefix = f"customers[{position}]"
    before = problems.count
    cleaned = _CustomerItem(
        external_id=_text(item.external_id, f"{prefix}.externalId", problems, MAX_IDENTIFIER),
        mobile=_mobile(item.mobile, f"{prefix}.mobile", problems),
        email=_email(item.email, f"{prefix}.email", problems),
        name=_text(item.name, f"{prefix}.name", problems, MAX_DETAILS),
    )
    if problems.count == before and next(cleaned.identifiers(), None) is None:
        problems.add(prefix, "give at least one of externalId, mobile, email")
    return cleaned


def _lock_holders(
    session: Session, org_id: int, items: Sequence[_CustomerItem]
) -> list[_CustomerState]:
    """Every stored customer holding an identifier of the batch, locked until commit."""
    conditions = []
    for attr, _ in _IDENTIFIERS:
        values = sorted({value for item in items for a, value in item.identifiers() if a == attr})
        if values:
            conditions.append(getattr(Customer, attr) == _any_of(values, Text))
    if not conditions:
        return []
    rows = session.execute(
        select(Customer.id, Customer.external_id, Customer.mobile, Customer.email, Customer.name)
        .where(Customer.org_id == org_id, or_(*conditions))
        # One lock order for every batch, so that two overlapping batches cannot deadlock.
        .order_by(Customer.id)
        .with_for_update()
    ).all()
    states = []
    for row in rows:
        state = _CustomerState(row.id, row.external_id, row.mobile, row.email, row.name)
        state.loaded = state.values()
        states.append(state)
    return states


def _conflict(
    position: int, item: _CustomerItem, index: dict[tuple[str, str], _CustomerState]
) -> DomainError:
    json_names = dict(_IDENTIFIERS)
    held = [
        f"{json_names[attr]} {value!r} belongs to {index[(attr, value)].describe()}"
        for attr, value in item.identifiers()
        if (attr, value) in index
    ]
    field = f"customers[{position}]"
    message = "identifiers of two different customers: " + "; ".join(held)
    return DomainError(ErrorKind.CONFLICT, f"{field}: {message}", [FieldProblem(field, message)])


_UPDATE_CUSTOMERS = text(
    """
    UPDATE customers AS c
    SET external_id = v.external_id, mobile = v.mobile, email = v.email, name = v.name
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:external_ids AS text[]), CAST(:mobiles AS text[]),
        CAST(:emails AS text[]), CAST(:names AS text[])
    ) AS v(id, external_id, mobile, email, name)
    WHERE c.org_id = :org_id AND c.id = v.id
    """
)

_RELEASE_IDENTIFIERS = text(
    """
    UPDATE customers SET external_id = NULL, mobile = NULL, email = NULL
    WHERE org_id = :org_id AND id = ANY(CAST(:ids AS bigint[]))
    """
)

_INSERT_CUSTOMERS = text(
    """
    INSERT INTO customers (org_id, external_id, mobile, email, name)
    SELECT :org_id, v.external_id, v.mobile, v.email, v.name
    FROM unnest(
        CAST(:external_ids AS text[]), CAST(:mobiles AS text[]), CAST(:emails AS text[]),
        CAST(:names AS text[])
    ) WITH ORDINALITY AS v(external_id, mobile, email, name, position)
    ORDER BY v.position
    RETURNING id, external_id, mobile, email
    """
)


def _columns(states: Sequence[_CustomerState]) -> dict[str, list[str | None]]:
    return {
        "external_ids": [s.external_id for s in states],
        "mobiles": [s.mobile for s in states],
        "emails": [s.email for s in states],
        "names": [s.name for s in states],
    }


def _passes_identifiers_between(changed: Sequence[_CustomerState]) -> bool:
    """Whether one stored customer takes an identifier another one gives up in this batch.

    Postgres checks a unique constraint row by row within a statement, so such a hand-over
    fails in a single UPDATE unless the identifiers are released first.
    """
    released: set[tuple[str, str]] = set()
    taken: set[tuple[str, str]] = set()
    for state in changed:
        assert state.loaded is not None
        # `loaded` ends with the name, which no unique constraint covers: zip stops before it.
        for (attr, _), old in zip(_IDENTIFIERS, state.loaded, strict=False):
            new = getattr(state, attr)
            if old != new:
                if old is not None:
                    released.add((attr, old))
                if new is not None:
                    taken.add((attr, new))
    return bool(released & taken)


def _write_customers(
    session: Session,
    org_id: int,
    changed: Sequence[_CustomerState],
    created: Sequence[_CustomerState],
    index: dict[tuple[str, str], _CustomerState],
) -> None:
    try:
        # A savepoint, so that a lost race leaves the caller's transaction usable.
        with session.begin_nested():
            if changed:
                ids = [s.id for s in changed]
                if _passes_identifiers_between(changed):
                    session.execute(_RELEASE_IDENTIFIERS, {"org_id": org_id, "ids": ids})
                session.execute(
                    _UPDATE_CUSTOMERS, {"org_id": org_id, "ids": ids, **_columns(changed)}
                )
            if created:
                rows = session.execute(
                    _INSERT_CUSTOMERS, {"org_id": org_id, **_columns(created)}
                ).all()
                # Every new customer holds at least one identifier, which finds its state.
                for row in rows:
                    attr, value = next(
                        (attr, getattr(row, attr))
                        for attr, _ in _IDENTIFIERS
                        if getattr(row, attr) is not None
                    )
                    index[(attr, value)].id = row.id
    except IntegrityError as exc:
        # Another transaction stored one of these identifiers after the batch looked.
        raise DomainError(
            ErrorKind.CONFLICT, "customers changed concurrently: send the batch again"
        ) from exc


def upsert_customers(
    session: Session, org_id: int, items: Sequence[CustomerInput]
) -> list[CustomerView]:
    """Create or update customers, matched by any identifier, applying items in input order.

    Answers each item's customer as the whole batch leaves it, in input order. One SELECT finds
    every stored customer the batch touches; the batch is then played in memory (so a later item
    sees what earlier ones did) and written with one UPDATE and one INSERT.
    """
    _check_batch(len(items), "customers")
    problems = _Problems()
    cleaned = [_clean_customer(position, item, problems) for position, item in enumerate(items)]
    problems.raise_if_any()

    stored = _lock_holders(session, org_id, cleaned)
    index: dict[tuple[str, str], _CustomerState] = {}
    for state in stored:
        for attr, _ in _IDENTIFIERS:
            value = getattr(state, attr)
            if value is not None:
                index[(attr, value)] = state

    created: list[_CustomerState] = []
    targets: list[_CustomerState] = []
    for position, item in enumerate(cleaned):
        holders: list[_CustomerState] = []
        for key in item.identifiers():
            holder = index.get(key)
            if holder is not None and all(holder is not h for h in holders):
                holders.append(holder)
        if len(holders) > 1:
            raise _conflict(position, item, index)
        if holders:
            target = holders[0]
        else:
            target = _CustomerState(id=None, created_by=position)
            created.append(target)
        for attr, value in item.identifiers():
            current = getattr(target, attr)
            if current != value:
                # The customer's old identifier is free again for the items that follow.
                if current is not None:
                    del index[(attr, current)]
                setattr(target, attr, value)
                index[(attr, value)] = target
        if item.name is not None:
            target.name = item.name
        targets.append(target)

    changed = [s for s in stored if s.values() != s.loaded]
    _write_customers(session, org_id, changed, created, index)

    views = []
    for state in targets:
        assert state.id is not None
        views.append(
            CustomerView(state.id, state.external_id, state.mobile, state.email, state.name)
        )
    return views


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


def _limit(value: int | None, field: str, problems: _Problems) -> None:
    if value is not None and not 1 <= value <= MAX_COUNT:
        problems.add(field, f"a positive integer up to {MAX_COUNT}, or null for unlimited")


def _till_ids(values: Sequence[str] | None, problems: _Problems) -> list[str] | None:
    if values is None:
        return None
    if not values:
        problems.add("allowedTillIds", "an empty list would refuse every till: null allows any")
        return None
    tills: list[str] = []
    for position, value in enumerate(values):
        field = f"allowedTillIds[{position}]"
        till = _text(value, field, problems, MAX_IDENTIFIER)
        if till is None and value.strip() == "":
            problems.add(field, "must not be empty")
        elif till is not None and till not in tills:
            tills.append(till)
    return tills


def create_series(session: Session, org_id: int, spec: SeriesInput) -> CouponSeries:
    problems = _Problems()
    name = _text(spec.name, "name", problems, MAX_DETAILS)
    if name is None and spec.name.strip() == "":
        problems.add("name", "must not be empty")
    _limit(spec.max_redemptions_per_coupon, "maxRedemptionsPerCoupon", problems)
    _limit(spec.max_redemptions_per_customer, "maxRedemptionsPerCustomer", problems)
    valid_from = _instant(spec.valid_from, "validFrom", problems)
    valid_till = _instant(spec.valid_till, "validTill", problems)
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
    series = session.execute(
        select(CouponSeries).where(CouponSeries.id == series_id, CouponSeries.org_id == org_id)
    ).scalar_one_or_none()
    if series is None:
        raise not_found("coupon series")
    return series


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


# Coupons


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


def _clean_ref(ref: CustomerRef | None, field: str, problems: _Problems) -> _Ref | None:
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
        cleaned = _mobile(value, subfield, problems)
    elif name == "email":
        cleaned = _email(value, subfield, problems)
    else:
        cleaned = _text(value, subfield, problems, MAX_IDENTIFIER)
    if cleaned is None:
        if problems.count == before:
            problems.add(subfield, "must not be empty")
        return None
    return (name, cleaned)


def _resolve_refs(
    session: Session, org_id: int, refs: Sequence[_Ref | None], problems: _Problems
) -> list[int | None]:
    """The customer id each reference names, in one query; unknown ones are problems."""
    wanted: dict[str, set[int | str]] = {}
    for ref in refs:
        if ref is not None:
            wanted.setdefault(ref[0], set()).add(ref[1])
    found: dict[_Ref, int] = {}
    if wanted:
        conditions = [
            _REF_COLUMNS[name] == _any_of(list(values), BigInteger if name == "userId" else Text)
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
    _check_batch(len(items), "coupons")
    get_series(session, org_id, series_id)
    if not items:
        return []

    problems = _Problems()
    first_seen: dict[str, int] = {}
    codes: list[str] = []
    refs: list[_Ref | None] = []
    expiries: list[datetime | None] = []
    for position, item in enumerate(items):
        prefix = f"coupons[{position}]"
        code = _text(item.code, f"{prefix}.code", problems, MAX_IDENTIFIER)
        if code is None:
            if item.code.strip() == "":
                problems.add(f"{prefix}.code", "must not be empty")
        elif code in first_seen:
            problems.add(f"{prefix}.code", f"{code!r} repeats coupons[{first_seen[code]}].code")
        else:
            first_seen[code] = position
        codes.append(code or "")
        refs.append(_clean_ref(item.issued_to, f"{prefix}.issuedTo", problems))
        expiries.append(_instant(item.expires_at, f"{prefix}.expiresAt", problems))
    problems.raise_if_any()

    customer_ids = _resolve_refs(session, org_id, refs, problems)
    problems.raise_if_any()

    taken = set(
        session.scalars(
            select(Coupon.code).where(
                Coupon.series_id == series_id, Coupon.code == _any_of(codes, Text)
            )
        )
    )
    if taken:
        clashes = _Problems()
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
    coupon = session.execute(
        select(Coupon)
        .where(Coupon.id == coupon_id, Coupon.org_id == org_id)
        # The counter moves under the worker: never answer from a stale identity map.
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if coupon is None:
        raise not_found("coupon")
    return _coupon_view(session, org_id, coupon, now)


def find_coupon(
    session: Session, org_id: int, series_id: int, code: str, *, now: datetime | None = None
) -> CouponView:
    """The coupon with this code in one of the org's series (codes are unique per series)."""
    coupon = session.execute(
        select(Coupon)
        .where(Coupon.org_id == org_id, Coupon.series_id == series_id, Coupon.code == code.strip())
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
