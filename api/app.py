"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.routes import jobs, reference, ui, upload


def create_app() -> FastAPI:
    app = FastAPI(
        title="bulkredeem",
        version="0.1.0",
        description="Bulk coupon-redemption imports, compatible with Capillary's "
        "'Upload Redeemed Coupons' API.",
    )
    errors.install(app)
    app.include_router(upload.router)
    app.include_router(jobs.router)
    app.include_router(reference.router)
    app.include_router(ui.router)
    return app


app = create_app()
