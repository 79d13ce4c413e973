"""The FastAPI application."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.routes import health, jobs, org, preview, reference, revert, successes, ui, upload
from core import logs
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
    # No database connection is opened here: the pools open theirs as requests need them and
    # keep them (core/db.py), so an idle API takes no slot of a server that others share, and
    # a database that is down does not stop it from starting (/readyz says so).
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
    app.include_router(preview.router)
    app.include_router(jobs.router)
    app.include_router(revert.router)
    app.include_router(successes.router)
    app.include_router(reference.router)
    app.include_router(org.router)
    app.include_router(ui.router)
    app.include_router(health.router)
    return app


app = create_app()
