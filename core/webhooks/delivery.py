"""Delivering an ended job's document: one attempt at a time, backing off, swept when lost."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlunsplit

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import rows_changed, set_org, transaction
from core.jobs import documents, queries
from core.settings import get_settings
from core.webhooks.signing import org_secret, sign
from core.webhooks.urls import CallbackRefused, resolve, split_url

SIGNATURE_HEADER = "X-Bulkredeem-Signature"
# Attempt n waits base * 2**(n-1) seconds after the n-th failure, at most BACKOFF_MAX_SECONDS,
# and never beyond webhook_retry_seconds after the job's end.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 600.0
# Statuses worth another try; any other non-2xx answer is the receiver refusing for good.
RETRYABLE_STATUSES = frozenset({408, 429})


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
        parts, host, port = split_url(url)
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
