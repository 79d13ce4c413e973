"""Server-Sent Events for a job: its document at every change, a last event at the end."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from core.db import transaction
from core.jobs import documents, queries
from core.models.jobs import TERMINAL_STATUSES
from core.settings import get_settings

POLL_SECONDS = 0.5  # progress commits once a chunk (~0.5 s of work): no point looking more often
KEEP_ALIVE_SECONDS = 15.0  # a comment line, so that proxies keep an idle stream open


def _snapshot(org_id: int, job_id: int) -> dict[str, Any]:
    with transaction(org_id) as session:
        return documents.job_document(queries.get_job(session, org_id, job_id))


def _event(name: str, document: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(document, separators=(',', ':'))}\n\n"


async def job_events(request: Request, org_id: int, job_id: int) -> AsyncIterator[str]:
    """`job` at once and whenever the job changes, then `end` when it has ended; stops early
    when the client goes away, or after `events_max_seconds` without an `end` (the client
    reconnects). Each look is a short transaction of its own."""
    last: tuple[Any, ...] | None = None
    quiet_since = started = time.monotonic()
    give_up = started + get_settings().events_max_seconds
    while True:
        document = await run_in_threadpool(_snapshot, org_id, job_id)
        if document["status"] in TERMINAL_STATUSES:
            yield _event("end", document)
            return
        progress = document["progress"]
        seen = (document["status"], progress["rowsProcessed"], progress["bytesProcessed"])
        if seen != last:
            last = seen
            quiet_since = time.monotonic()
            yield _event("job", document)
        elif time.monotonic() - quiet_since >= KEEP_ALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)
        if await request.is_disconnected() or time.monotonic() >= give_up:
            return
