"""Request dependencies: admission (key -> org, last use, rate) and the request's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import keys
from core.db import new_session, set_org, transaction, transaction_aside
from core.errors import DomainError, ErrorKind
from core.models import ApiKey
from core.ratelimit import get_limiter
from core.settings import get_settings


class Bucket(StrEnum):
    """What a request counts against: uploads have their own, lower, rate."""

    UPLOADS = "uploads"
    REQUESTS = "requests"


def presented_key(request: Request) -> str:
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


def admit(match: keys.KeyMatch | None, bucket: Bucket) -> int:
    """The one admission rule of every authenticated request, however its route found the
    key: an unknown or revoked key is a 401; the key's use is recorded (a refused request
    is a use too); the org's rate for `bucket` then gives a 429. The org id, else raises."""
    if match is None:
        raise DomainError(ErrorKind.UNAUTHENTICATED, "invalid or revoked API key")
    if match.stale:
        # On a connection aside from the request's (which may be held meanwhile), in a
        # transaction of its own, so that it stands whatever becomes of the request.
        with transaction_aside() as session:
            keys.touch(session, match)
    settings = get_settings()
    per_minute = (
        settings.uploads_per_minute if bucket is Bucket.UPLOADS else settings.requests_per_minute
    )
    retry = get_limiter().retry_after(match.org_id, bucket.value, per_minute)
    if retry is not None:
        raise DomainError(
            ErrorKind.RATE_LIMITED,
            f"too many {bucket.value} for this org: at most {per_minute} a minute",
            retry_after=retry,
        )
    return match.org_id


@dataclass(frozen=True)
class Uploader:
    """Who makes an upload: the org, and the key with its label as it is now (the job keeps
    both, so that a key relabelled or deleted later does not rewrite who uploaded it)."""

    org_id: int
    key_id: int
    key_label: str | None


def uploader(request: Request) -> Uploader:
    """The caller's org and key, within its upload rate (the key looked up in a short
    transaction: an upload's own transaction comes only once its file is stored)."""
    key = presented_key(request)
    with transaction() as session:
        match = keys.identify(session, key)
        org_id = admit(match, Bucket.UPLOADS)
        assert match is not None  # admit refused it otherwise
        # The label is the org's to read: under its row-level security, like every read.
        set_org(session, org_id)
        label = session.execute(
            select(ApiKey.label).where(ApiKey.id == match.key_id)
        ).scalar_one_or_none()
    return Uploader(org_id=org_id, key_id=match.key_id, key_label=label)


def upload_org(request: Request) -> int:
    """The caller's org, within its upload rate (for a route that makes no job)."""
    return uploader(request).org_id


UploaderOf = Annotated[Uploader, Depends(uploader)]
UploadOrgId = Annotated[int, Depends(upload_org)]


@dataclass
class Tx:
    """The request's unit of work, scoped to the caller's org. The dependency owns the commit."""

    session: Session
    org_id: int


def org_transaction(request: Request) -> Iterator[Tx]:
    """The request's transaction, which also finds its key (a transaction for the key, then
    one for the request, cost the API ~1 ms of CPU more a request; bench/README.md)."""
    key = presented_key(request)
    session = new_session()
    try:
        with session.begin():
            org_id = admit(keys.identify(session, key), Bucket.REQUESTS)
            set_org(session, org_id)
            yield Tx(session, org_id)
    finally:
        session.close()


# scope="function": commit before the response is sent, so a client never sees an id that a
# failed commit would take back.
OrgTx = Annotated[Tx, Depends(org_transaction, scope="function")]
