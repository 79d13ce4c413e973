"""The web page's test fixtures: headless Chromium against a real API and a real worker.

The API runs as a uvicorn process sharing the test session's database, Redis, queue and file
store, so that the session's Celery worker applies the jobs the page uploads. Chromium is
Debian's (`/usr/bin/chromium`), driven by Playwright's Python package; it is installed with
apt-get when missing, and the tests skip, saying why, only when that cannot be done. A test
module loads these with `pytest_plugins = ["tests.browser"]`; its helpers are in tests/webpage.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.processes import Process, service_env
from tests.processes import api as start_api
from tests.webpage import CHROMIUM, CHROMIUM_ARGS, PHONE, WIDE, open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def _install_chromium() -> str | None:
    """Installs Debian's chromium; the reason it could not, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {(done.stdout + done.stderr)[-500:]}"
    return None if CHROMIUM.exists() else "apt-get installed chromium, but not as /usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package")
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason is not None:
            pytest.skip(f"no Chromium at {CHROMIUM}: {reason}")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def base_url(
    database_url: str, worker: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The API over HTTP, in a uvicorn process of its own on the session's services."""
    # A page polls one job at a time: two poll connections, not the default's thirty, on a
    # Postgres that other test processes share.
    env = service_env(BULKREDEEM_DB_POOL_SIZE="2")
    api, url = start_api(env, tmp_path_factory.mktemp("web") / "api.log")
    try:
        yield url
    finally:
        api.stop()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    yield from open_page(browser, base_url, WIDE)


@pytest.fixture
def phone(browser: Browser, base_url: str) -> Iterator[Page]:
    """The page on a phone-sized screen."""
    yield from open_page(browser, base_url, PHONE)


@pytest.fixture(params=[PHONE, WIDE], ids=["phone", "wide"])
def any_width(request: pytest.FixtureRequest, browser: Browser, base_url: str) -> Iterator[Page]:
    """The page once on a phone-sized screen, once on a wide one."""
    yield from open_page(browser, base_url, request.param)
