"""The FastAPI application."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api import errors
from api.routes import health, jobs, reference, ui, upload
from core import logs
from core.db import warm_pool
from core.settings import get_settings


def _install_logging() -> None:
    """Our lines on the root logger, and uvicorn's own (startup, access) in the same format."""
    log_format = get_settings().log_format
    logs.configure(log_format)
    if log_format != "text":
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logs.format_handlers(logging.getLogger(name), log_format)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Connections opened before the first request: otherwise the first burst of polls pays
    # for new Postgres backends (bench/README.md). A database that is down does not stop the
    # API from starting: /readyz says so, and requests open connections when it is back.
    try:
        await run_in_threadpool(warm_pool, get_settings().db_pool_size)
    except Exception:
        logging.getLogger(__name__).warning("could not open the database pool", exc_info=True)
    # What exists now (modules, the app, its models) lives as long as the process: out of the
    # collector's sight, a full collection no longer walks it all. Such a pass stalled every
    # request in flight for 100-150 ms, once in the first seconds of polling.
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        title="bulkredeem",
        version="0.1.0",
        description="Bulk coupon-redemption imports, compatible with Capillary's "
        "'Upload Redeemed Coupons' API.",
    )
    _install_logging()
    errors.install(app)
    app.include_router(upload.router)
    app.include_router(jobs.router)
    app.include_router(reference.router)
    app.include_router(ui.router)
    app.include_router(health.router)
    return app


app = create_app()
