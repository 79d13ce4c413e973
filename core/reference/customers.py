"""Customers: the upsert that matches an item to the customer holding any of its identifiers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Text, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DomainError, ErrorKind, FieldProblem
from core.limits import MAX_DETAILS, MAX_IDENTIFIER
from core.models import Customer
from core.reference.validate import (
    Problems,
    any_of,
    check_batch,
    clean_email,
    clean_mobile,
    clean_text,
)

# (column attribute, JSON name) of the identifiers a customer is matched by.
_IDENTIFIERS = (("external_id", "externalId"), ("mobile", "mobile"), ("email", "email"))

# Customers


@dataclass(frozen=True, kw_only=True)
class CustomerFields:
    """A customer's identifiers and name: as an upsert item gives them, or normalised."""

    external_id: str | None = None
    mobile: str | None = None
    email: str | None = None
    name: str | None = None

    def identifiers(self) -> Iterator[tuple[str, str]]:
        for attr, _ in _IDENTIFIERS:
            value = getattr(self, attr)
            if value is not None:
                yield attr, value


CustomerInput = CustomerFields  # what the API hands in


@dataclass(frozen=True, kw_only=True)
class CustomerView(CustomerFields):
    """A customer as stored, with its id."""

    user_id: int


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


def _clean_customer(position: int, item: CustomerInput, problems: Problems) -> CustomerFields:
    prefix = f"customers[{position}]"
    before = problems.count
    cleaned = CustomerFields(
        external_id=clean_text(item.external_id, f"{prefix}.externalId", problems, MAX_IDENTIFIER),
        mobile=clean_mobile(item.mobile, f"{prefix}.mobile", problems),
        email=clean_email(item.email, f"{prefix}.email", problems),
        name=clean_text(item.name, f"{prefix}.name", problems, MAX_DETAILS),
    )
    if problems.count == before and next(cleaned.identifiers(), None) is None:
        problems.add(prefix, "give at least one of externalId, mobile, email")
    return cleaned


def _lock_holders(
    session: Session, org_id: int, items: Sequence[CustomerFields]
) -> list[_CustomerState]:
    """Every stored customer holding an identifier of the batch, locked until commit."""
    conditions = []
    for attr, _ in _IDENTIFIERS:
        values = sorted({value for item in items for a, value in item.identifiers() if a == attr})
        if values:
            conditions.append(getattr(Customer, attr) == any_of(values, Text))
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
    position: int, item: CustomerFields, index: dict[tuple[str, str], _CustomerState]
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
    check_batch(len(items), "customers")
    problems = Problems()
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
            CustomerView(
                user_id=state.id,
                external_id=state.external_id,
                mobile=state.mobile,
                email=state.email,
                name=state.name,
            )
        )
    return views
