"""The one place where domain errors become HTTP answers, in each route's error envelope."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DomainError, ErrorKind

log = logging.getLogger(__name__)


class ErrorStatus(BaseModel):
    success: bool
    code: int
    message: str


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Capillary's error envelope: every 4xx and 5xx answer has this shape."""

    success: bool
    status: ErrorStatus
    errors: list[ErrorItem]


# For the OpenAPI document: what every route may answer besides its success.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad request"),
        (401, "No valid API key"),
        (404, "Not found (or another org's)"),
        (409, "Conflict"),
        (422, "Invalid body or parameters"),
        (429, "Too many requests (see Retry-After)"),
        (503, "The database was briefly unreachable: retry (see Retry-After)"),
    )
}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    413: {"model": ErrorBody, "description": "Over the size or row limit"},
    415: {"model": ErrorBody, "description": "Not a CSV (the answer says what the file is)"},
}


# The data exceptions a request's own values can cause: character_not_in_repertoire (a NUL),
# numeric_value_out_of_range, string_data_right_truncation, datetime_field_overflow.
INPUT_SQLSTATES = frozenset({"22021", "22003", "22001", "22008"})

# The server is not there for this request: too many connections, shutting down or starting
# up (class 57P0x), or the connection itself failed (class 08).
UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


def _unavailable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    # No SQLSTATE on an OperationalError: psycopg could not connect at all.
    return sqlstate is None or sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")


STATUS_BY_KIND = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA: 415,
    ErrorKind.UNPROCESSABLE: 422,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.GONE: 410,
}


# Capillary's routes refuse in Capillary's own shape (DESIGN.md, Capillary's wire format), so
# that a client written against Capillary reads its refusals too; every other route in ours.
CAPILLARY_PATHS = "/coupon/api/"


def error_body(
    status: int, message: str, errors: list[dict[str, str]], *, capillary: bool = False
) -> dict[str, Any]:
    if capillary:
        return {"success": False, "status": status, "message": message, "errors": errors}
    return {
        "success": False,
        "status": {"success": False, "code": status, "message": message},
        "errors": errors,
    }


def error_response(
    request: Request,
    status: int,
    message: str,
    errors: list[dict[str, str]] | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    capillary = request.url.path.startswith(CAPILLARY_PATHS)
    return JSONResponse(
        error_body(status, message, errors or [], capillary=capillary),
        status_code=status,
        headers=headers,
    )


def _location(loc: tuple[Any, ...]) -> str:
    """A pydantic location as clients read it elsewhere: customers[1].mobile."""
    text = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        status = STATUS_BY_KIND[exc.kind]
        problems = [{"field": p.field, "message": p.message} for p in exc.problems]
        return error_response(request, status, exc.message, problems, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _location(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "request", "message": "invalid"}
        return error_response(request, 422, f"{first['field']}: {first['message']}", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value that came from the request (a NUL in text, a number
        # or a date out of range, a string too long): bad input that a check above should
        # have caught, a 400. Any other refusal is ours to fix: a 500.
        sqlstate = getattr(exc.orig, "sqlstate", None)
        # No SQLSTATE: the driver refused the value before sending it (a NUL in text).
        if sqlstate is not None and sqlstate not in INPUT_SQLSTATES:
            return await unexpected(request, exc)
        log.warning("database refused a value (%s): %s", sqlstate, exc.orig)
        return error_response(
            request, 400, "a value is not valid (out of range, or not valid text)"
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if _unavailable(exc):
            # The server closed the connection under the request, or took no new one (a
            # restart, a failover, a terminated backend, every connection slot taken): a
            # moment's outage for the client to retry, not a fault to hide behind a 500.
            log.warning(
                "database unavailable during %s %s: %s",
                request.method,
                request.url.path,
                str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__,
            )
            return error_response(
                request,
                503,
                "the database is briefly unavailable; retry the request",
                retry_after=1,
            )
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never leak a stack trace, SQL or a path to the client; the log has the details.
        log.exception("unhandled error", exc_info=exc)
        return error_response(request, 500, "internal error")
