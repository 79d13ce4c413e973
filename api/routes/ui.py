"""The operators' web page: `/` and its static files, kept out of the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from core.errors import not_found

STATIC = Path(__file__).resolve().parent.parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The page's scripts (ES modules: a browser runs one only when it is served as JavaScript) and
# its style sheet, listed once at start. Only a name in this list is served, so nothing else
# under api/ ever can be, and a module added to static/ needs no line here.
ASSETS = {
    path.name: TYPES[path.suffix]
    for path in STATIC.iterdir()
    if path.suffix in TYPES and path.is_file()
}
# The page talks to this origin only and runs no inline script: a key typed into it cannot be
# sent elsewhere by injected markup.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release's page and scripts must never be mixed with a cached old one.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(
        STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS
    )


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise not_found("file")
    return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)
