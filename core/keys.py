"""API keys: generated with a CSPRNG, shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from core.db import rows_changed, set_org
from core.models import ApiKey, Org

KEY_PREFIX = "br_"
PREFIX_CHARS = 7  # random characters shown after "br_": enough to tell keys apart
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
    prefix = prefix_of(key)
    row = ApiKey(org_id=org_id, prefix=prefix, key_hash=hash_key(key), label=label)
    session.add(row)
    session.flush()
    return IssuedKey(id=row.id, org_id=org_id, key=key, prefix=prefix)


def create_org(session: Session, name: str) -> tuple[Org, IssuedKey]:
    org = Org(name=name)
    session.add(org)
    session.flush()
    return org, create_key(session, org.id, label="initial")


@dataclass(frozen=True)
class KeyMatch:
    key_id: int
    org_id: int
    stale: bool  # last_used_at is due a write (never written, or a minute old)


def prefix_of(key: str) -> str:
    return key[: len(KEY_PREFIX) + PREFIX_CHARS]


def match(candidates: Iterable[Sequence[Any]], key: str) -> KeyMatch | None:
    """Which of the keys found by `key`'s prefix, (key_id, org_id, key_hash, last_used_at)
    rows, `key` is: the secret part is checked by a constant-time comparison of hashes."""
    digest = hash_key(key)
    row = next((c for c in candidates if hmac.compare_digest(c[2], digest)), None)
    if row is None:
        return None
    last = row[3]
    stale = last is None or datetime.now(UTC) - last >= LAST_USED_RESOLUTION
    return KeyMatch(key_id=int(row[0]), org_id=int(row[1]), stale=stale)


def identify(session: Session, key: str) -> KeyMatch | None:
    """The valid, unrevoked key that `key` is, else None; reads only."""
    if not key:
        return None
    # Before we know the org, row-level security hides every key: finding keys by their
    # visible prefix is the one thing the service may do across orgs, through a function of
    # the owner's.
    candidates = session.execute(
        text("SELECT key_id, org_id, key_hash, last_used_at FROM br_key_lookup(:prefix)"),
        {"prefix": prefix_of(key)},
    ).all()
    return match(candidates, key)


def touch(session: Session, match: KeyMatch) -> None:
    """Record the key's use (callers do it only when `match.stale`: once a minute at most)."""
    set_org(session, match.org_id)
    session.execute(
        update(ApiKey).where(ApiKey.id == match.key_id).values(last_used_at=datetime.now(UTC))
    )


def authenticate(session: Session, key: str) -> int | None:
    """The org id for a valid, unrevoked key, else None; records its use in `session`."""
    match = identify(session, key)
    if match is None:
        return None
    if match.stale:
        touch(session, match)
    return match.org_id


def revoke_key(session: Session, key_id: int) -> bool:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return rows_changed(result) > 0
