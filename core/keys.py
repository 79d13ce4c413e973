"""API keys: generated with a CSPRNG, shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.models import ApiKey, Org

KEY_PREFIX = "br_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    id: int
    org_id: int
    key: str  # the only time the whole key exists outside the client
    prefix: str


def create_key(session: Session, org_id: int, label: str | None = None) -> IssuedKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    prefix = key[:10]
    row = ApiKey(org_id=org_id, prefix=prefix, key_hash=hash_key(key), label=label)
    session.add(row)
    session.flush()
    return IssuedKey(id=row.id, org_id=org_id, key=key, prefix=prefix)


def create_org(session: Session, name: str) -> tuple[Org, IssuedKey]:
    org = Org(name=name)
    session.add(org)
    session.flush()
    return org, create_key(session, org.id, label="initial")


def authenticate(session: Session, key: str) -> int | None:
    """The org id for a valid, unrevoked key, else None."""
    if not key:
        return None
    digest = hash_key(key)
    row = session.execute(
        select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    # The lookup is by hash; compare again in constant time so timing says nothing either way.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return row.org_id


def revoke_key(session: Session, key_id: int) -> bool:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(getattr(result, "rowcount", 0))
