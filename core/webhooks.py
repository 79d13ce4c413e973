"""Completion webhooks: the callbackUrl judged, the ended job's document signed and POSTed.

A delivery row (core/models/webhooks.py) is made by the database in the transaction that ends
the job; `deliver` makes one attempt and says when to try again, the worker turns that into a
Celery message with a countdown, and the sweeper re-rings deliveries whose message was lost.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.db import rows_changed, set_org, transaction
from core.errors import invalid
from core.jobs import documents, queries
from core.models import Org
from core.settings import get_settings

MAX_URL_LENGTH = 2000
SIGNATURE_HEADER = "X-Bulkredeem-Signature"
# Attempt n waits base * 2**(n-1) seconds after the n-th failure, at most BACKOFF_MAX_SECONDS,
# and never beyond webhook_retry_seconds after the job's end.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 600.0
# Statuses worth another try; any other non-2xx answer is the receiver refusing for good.
RETRYABLE_STATUSES = frozenset({408, 429})


class CallbackRefused(ValueError):
    """The URL is not one the service will call (syntax, scheme, or where it points)."""


# --- judging the URL -----------------------------------------------------------------------


def _split(url: str) -> tuple[SplitResult, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        raise CallbackRefused("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackRefused("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("must be an http:// or https:// URL")
    if not parts.hostname:
        raise CallbackRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("must not carry credentials: the signature authenticates calls")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def is_public(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses
    (IPv4, IPv6, and IPv4 mapped into IPv6)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses, refused unless every one is public (or the setting allows)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise CallbackRefused(f"names a host that does not resolve ({host})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise CallbackRefused(f"names a host that does not resolve ({host})")
    if not get_settings().webhook_allow_private:
        for address in addresses:
            if not is_public(address):
                raise CallbackRefused(
                    "points to a private, loopback, link-local or otherwise non-public "
                    f"address ({address})"
                )
    return addresses


def check_callback_url(url: str) -> str:
    """The URL if the service may call it; CallbackRefused saying why not."""
    _, host, port = _split(url)
    resolve(host, port)
    return url


def validate_callback_url(raw: str) -> str:
    """callbackUrl of an upload, or a 400 naming it."""
    try:
        return check_callback_url(raw)
    except CallbackRefused as exc:
        raise invalid("callbackUrl", f"callbackUrl {exc}") from None


# --- signing -------------------------------------------------------------------------------


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


# --- delivering ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    state: str  # the delivery's state afterwards, or "not_due" / "none" when nothing was sent
    retry_in: float | None = None  # seconds until the next attempt is due


def backoff(failures: int, base: float = BACKOFF_BASE_SECONDS) -> float:
    return min(base * 2 ** max(failures - 1, 0), BACKOFF_MAX_SECONDS)


_CLAIM = text(
    """
    UPDATE webhook_deliveries SET state = 'delivering', lease_owner = :token,
        lease_expires_at = now() + make_interval(secs => :lease), updated_at = now()
    WHERE job_id = :job_id AND (
        (state = 'pending' AND next_attempt_at <= now())
        OR (state = 'delivering' AND lease_expires_at < now()))
    RETURNING url, created_at, jsonb_array_length(attempts) AS tried
    """
)

_RECORD = text(
    """
    UPDATE webhook_deliveries SET state = CAST(:state AS text),
        attempts = attempts || CAST(:attempt AS jsonb),
        next_attempt_at = coalesce(CAST(:next AS timestamptz), next_attempt_at),
        -- a retry's message is sent right after this commits
        enqueued_at = CASE WHEN CAST(:state AS text) = 'pending' THEN now() ELSE enqueued_at END,
        finished_at = CASE WHEN CAST(:state AS text) = 'pending' THEN NULL ELSE now() END,
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE job_id = :job_id AND state = 'delivering' AND lease_owner = :token
    """
)


def deliver(job_id: int, *, base_delay: float = BACKOFF_BASE_SECONDS) -> Outcome:
    """One attempt at the job's delivery, if one is due; any number of callers may race."""
    settings = get_settings()
    token = uuid.uuid4().hex
    with transaction() as session:
        org_id = queries.org_of(session, job_id)
        if org_id is None:
            return Outcome("none")
        set_org(session, org_id)
        claimed = session.execute(
            _CLAIM,
            {
                "job_id": job_id,
                "token": token,
                "lease": settings.webhook_timeout_seconds * 4 + 30,
            },
        ).one_or_none()
        if claimed is None:
            return Outcome("not_due")
        job = queries.get_job(session, org_id, job_id)
        # The same bytes at every attempt: the ended job no longer changes, and its delivery
        # state (which would be stale by the time it is read) is left out.
        document = documents.job_document(job, callback=False)
        body = json.dumps(document, separators=(",", ":")).encode()
        secret = org_secret(session, org_id)

    started = datetime.now(UTC)
    clock = time.monotonic()
    status, error, permanent = _post(claimed.url, body, secret, settings.webhook_timeout_seconds)
    attempt = {
        "at": documents.iso(started),
        "status": status,
        "error": error,
        "durationMs": round((time.monotonic() - clock) * 1000),
    }
    retry_in: float | None = None
    next_at: datetime | None = None
    if status is not None and 200 <= status < 300:
        state = "delivered"
    elif permanent:
        state = "failed"
    else:
        retry_in = backoff(claimed.tried + 1, base_delay)
        next_at = datetime.now(UTC) + timedelta(seconds=retry_in)
        deadline = claimed.created_at + timedelta(seconds=settings.webhook_retry_seconds)
        state = "pending" if next_at <= deadline else "failed"
        if state == "failed":
            retry_in = next_at = None
    with transaction(org_id) as session:
        recorded = session.execute(
            _RECORD,
            {
                "job_id": job_id,
                "token": token,
                "state": state,
                "attempt": json.dumps([attempt]),
                "next": next_at,
            },
        )
        if not rows_changed(recorded):
            return Outcome("lease_lost")  # another worker took it over; its record stands
    return Outcome(state, retry_in)


def _post(
    url: str, body: bytes, secret: str, timeout: float
) -> tuple[int | None, str | None, bool]:
    """POST to the URL at an address checked just now (DNS may have changed since the upload),
    connecting to that very address so that a second lookup cannot point elsewhere.

    Returns (status, error, permanent). Redirects are not followed.
    """
    try:
        parts, host, port = _split(url)
        addresses = resolve(host, port)
    except CallbackRefused as exc:
        return None, f"refused: callbackUrl {exc}", True
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": "bulkredeem-webhook/1",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
    }
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    error = "no address to connect to"
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for address in addresses:
            literal = f"[{address}]" if ":" in address else address
            target = urlunsplit(
                (parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, "")
            )
            try:
                with client.stream(
                    "POST", target, content=body, headers=headers, extensions=extensions
                ) as response:
                    status = response.status_code
            except httpx.ConnectError as exc:
                error = f"ConnectError: {exc}"[:500]
                continue  # the host's next address, if any
            except httpx.HTTPError as exc:
                return None, f"{type(exc).__name__}: {exc}"[:500], False
            # Only a 2xx delivers; after a 5xx, 408 or 429 the receiver may yet take it.
            return status, None, not (status >= 500 or status in RETRYABLE_STATUSES)
    return None, error, False


def due_now(job_id: int) -> bool:
    """Whether the job has a delivery waiting for its first (or next) attempt now."""
    with transaction() as session:
        org_id = queries.org_of(session, job_id)
        if org_id is None:
            return False
        set_org(session, org_id)
        return (
            session.execute(
                text(
                    "SELECT 1 FROM webhook_deliveries WHERE job_id = :id "
                    "AND state = 'pending' AND next_attempt_at <= now()"
                ),
                {"id": job_id},
            ).first()
            is not None
        )


def sweep(session: Session, grace_seconds: float | None = None) -> list[int]:
    """Deliveries to ring again: never rung, overdue past the grace (their message lost), or
    whose attempt's worker died. Across orgs, hence the owner's function."""
    if grace_seconds is None:
        grace_seconds = max(2 * get_settings().sweep_interval_seconds, 10.0)
    rows = session.execute(text("SELECT br_webhooks_due(:grace) AS id"), {"grace": grace_seconds})
    return sorted(row.id for row in rows)
