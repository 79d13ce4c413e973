"""The FastAPI application."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from api import errors
from api.routes import health, jobs, reference, ui, upload
from core import logs
from core.settings import get_settings


def _install_logging() -> None:
    """Our lines on the root logger, and uvicorn's own (startup, access) in the same format."""
    log_format = get_settings().log_format
    logs.configure(log_format)
    if log_format != "text":
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logs.format_handlers(logging.getLogger(name), log_format)


def create_app() -> FastAPI:
    app = FastAPI(
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
