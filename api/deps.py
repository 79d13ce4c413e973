"""Request dependencies: the caller's org (from its API key) and the request's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core import keys
from core.db import new_session, set_org, transaction
from core.errors import DomainError, ErrorKind


def _presented_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-cap-api-oauth-token", "").strip()


def authenticated_org(request: Request) -> int:
    """The org of the request's API key, checked in a short transaction of its own."""
    key = _presented_key(request)
    if not key:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "missing API key")
    with transaction() as session:
        org_id = keys.authenticate(session, key)
    if org_id is None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "invalid or revoked API key")
    return org_id


OrgId = Annotated[int, Depends(authenticated_org)]


@dataclass
class Tx:
    """The request's unit of work, scoped to the caller's org. The dependency owns the commit."""

    session: Session
    org_id: int


def org_transaction(org_id: OrgId) -> Iterator[Tx]:
    session = new_session()
    try:
        with session.begin():
            set_org(session, org_id)
            yield Tx(session, org_id)
    finally:
        session.close()


# scope="function": commit before the response is sent, so a client never sees an id that a
# failed commit would take back.
OrgTx = Annotated[Tx, Depends(org_transaction, scope="function")]
