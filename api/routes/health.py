"""Liveness, readiness and metrics: for load balancers and Prometheus, so no key and no limit.

They stay out of the OpenAPI document: they are not part of the client's API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from core import metrics
from core.db import transaction
from core.storage import get_storage

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

CHECK_TIMEOUT_SECONDS = 2.0


def _postgres() -> None:
    with transaction() as session:
        session.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"),
            {"ms": str(int(CHECK_TIMEOUT_SECONDS * 1000))},
        )
        session.execute(text("SELECT 1")).scalar_one()


def _redis() -> None:
    client = metrics.redis_client()
    try:
        client.ping()
    finally:
        client.close()


def _storage() -> None:
    """The store is there and writable; nothing is written (probes come often, unasked)."""
    get_storage().check()


CHECKS: dict[str, tuple[Callable[[], None], str]] = {
    "postgres": (_postgres, "unreachable"),
    "redis": (_redis, "unreachable"),
    "storage": (_storage, "not writable"),
}


async def _check(name: str) -> str | None:
    """None when the dependency answers; else what is wrong, short and free of secrets."""
    probe, failure = CHECKS[name]
    try:
        # asyncio's thread, not anyio's: a probe that hangs is left behind, not waited for.
        await asyncio.wait_for(asyncio.to_thread(probe), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("readyz: %s timed out", name)
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:
        # The details (hosts, paths) go to the log only, never to an unauthenticated caller.
        log.warning("readyz: %s failed: %s", name, exc)
        return f"{failure} ({type(exc).__name__})"
    return None


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive; nothing else is touched."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz() -> JSONResponse:
    """Postgres, Redis and storage answer: 200; else 503 naming what is wrong."""
    names = list(CHECKS)
    results = await asyncio.gather(*(_check(name) for name in names))
    checks = {
        name: {"status": "ok"} if problem is None else {"status": "error", "error": problem}
        for name, problem in zip(names, results, strict=True)
    }
    ready = all(problem is None for problem in results)
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(metrics.scrape_api(), media_type=CONTENT_TYPE_LATEST)
