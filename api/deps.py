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
from core.ratelimit import get_limiter
from core.settings import get_settings


def _presented_key(request: Request) -> str:
    """The request's API key; 401 when none is sent, or when one is sent without its scheme."""
    auth = request.headers.get("authorization", "").strip()
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    key = request.headers.get("x-cap-api-oauth-token", "").strip()
    if auth and not key:
        if scheme.lower() == "bearer":
            problem = "the Authorization header has the Bearer scheme but no key"
        elif not value.strip():
            # `Authorization: <key>`: a common slip, worth its own answer.
            problem = "the Authorization header lacks its scheme"
        else:
            problem = "the Authorization header's scheme is not Bearer"
        raise DomainError(
            ErrorKind.UNAUTHENTICATED, f"{problem}: send `Authorization: Bearer <key>`"
        )
    if not key:
        raise DomainError(
            ErrorKind.UNAUTHENTICATED,
            "missing API key: send `Authorization: Bearer <key>` (or `x-cap-api-oauth-token`)",
        )
    return key


def authenticated_org(request: Request) -> int:
    """The org of the request's API key, checked in a short transaction of its own."""
    key = _presented_key(request)
    with transaction() as session:
        org_id = keys.authenticate(session, key)
    if org_id is None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "invalid or revoked API key")
    return org_id


def _limited(bucket: str, org_id: int, per_minute: int) -> int:
    retry = get_limiter().retry_after(org_id, bucket, per_minute)
    if retry is not None:
        raise DomainError(
            ErrorKind.RATE_LIMITED,
            f"too many {bucket} for this org: at most {per_minute} a minute",
            retry_after=retry,
        )
    return org_id


def upload_org(org_id: Annotated[int, Depends(authenticated_org)]) -> int:
    """The caller's org, within its upload rate."""
    return _limited("uploads", org_id, get_settings().uploads_per_minute)


UploadOrgId = Annotated[int, Depends(upload_org)]


@dataclass
class Tx:
    """The request's unit of work, scoped to the caller's org. The dependency owns the commit."""

    session: Session
    org_id: int


def org_transaction(request: Request) -> Iterator[Tx]:
    """The request's transaction, which also finds its key (a transaction for the key, then
    one for the request, cost the API ~1 ms of CPU more a request; bench/README.md)."""
    key = required_key(request)
    match = None
    session = new_session()
    try:
        with session.begin():
            match = keys.identify(session, key)
            org_id = admitted(match)
            set_org(session, org_id)
            yield Tx(session, org_id)
    finally:
        session.close()
        # Only now: a connection taken while this one was held could wait for the pool.
        if match is not None:
            record_use(match)


def required_key(request: Request) -> str:
    return _presented_key(request)


def admitted(match: keys.KeyMatch | None) -> int:
    """The org of the request's key, within its rate; else 401/429."""
    if match is None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "invalid or revoked API key")
    return _limited("requests", match.org_id, get_settings().polls_per_minute)


def record_use(match: keys.KeyMatch) -> None:
    """The key's last use, written in a transaction of its own (once a minute at most), so
    that it stands whatever becomes of the request."""
    if match.stale:
        with transaction() as session:
            keys.touch(session, match)


# scope="function": commit before the response is sent, so a client never sees an id that a
# failed commit would take back.
OrgTx = Annotated[Tx, Depends(org_transaction, scope="function")]
