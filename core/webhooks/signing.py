"""The org's webhook secret, and the signature a receiver checks (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.models import Org


def new_secret() -> str:
    return secrets.token_hex(32)  # 32 random bytes


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def org_secret(session: Session, org_id: int) -> str:
    """The org's signing secret, made on first need (the session is scoped to the org)."""
    secret = session.execute(select(Org.webhook_secret).where(Org.id == org_id)).scalar()
    if secret:
        return str(secret)
    made = session.execute(
        text("SELECT br_org_webhook_secret(:org, :candidate)"),
        {"org": org_id, "candidate": new_secret()},
    ).scalar()
    if not made:
        raise RuntimeError(f"org {org_id}: no webhook secret (is the session scoped to it?)")
    return str(made)


def admin_secret(session: Session, org_id: int, *, rotate: bool = False) -> str:
    """For the org's admin (an owner's session): the secret, made or replaced if asked."""
    org = session.get(Org, org_id)
    if org is None:
        raise LookupError(f"no org {org_id}")
    if rotate or not org.webhook_secret:
        org.webhook_secret = new_secret()
        session.flush()
    return str(org.webhook_secret)
