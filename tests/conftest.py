"""Shared fixtures: a fresh, migrated database on a real Postgres, a real Redis, an API client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.crowd import held_connections, server_url
from tests.processes import Process
from tests.processes import worker as start_worker
from tests.services import find_postgres, find_redis

FIXTURES = Path(__file__).parent / "fixtures"

# Set before any test module imports the app: importing it configures Celery (broker, queue).
_RUN = uuid.uuid4().hex[:8]
os.environ["REDIS_URL"] = find_redis()
os.environ["BULKREDEEM_QUEUE_NAME"] = f"bulkredeem-test-{_RUN}"
os.environ["BULKREDEEM_REDIS_PREFIX"] = f"bulkredeem-test-{_RUN}"
# Small pools in this process and in every API and worker process the tests start (they get
# this environment): the tests' server may serve other databases and other test runs, with
# few of its 100 connections to spare. 3, not 2: a poll test keeps three poll connections.
os.environ.setdefault("BULKREDEEM_DB_POLL_POOL_SIZE", "3")
os.environ.setdefault("BULKREDEEM_DB_MAIN_POOL_SIZE", "3")

# BULKREDEEM_TEST_HOLD_CONNECTIONS=N: the session holds N idle connections to the server, as
# a crowded CI machine's other clients would (tests/crowd.py does the same for any command).
HOLD_CONNECTIONS = "BULKREDEEM_TEST_HOLD_CONNECTIONS"
_held = ExitStack()


def pytest_sessionstart(session: pytest.Session) -> None:
    count = int(os.environ.get(HOLD_CONNECTIONS) or 0)
    if count:
        _held.enter_context(held_connections(count))


def pytest_sessionfinish(session: pytest.Session) -> None:
    _held.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    count = int(os.environ.get(HOLD_CONNECTIONS) or 0)
    if not count:
        return None
    return f"{HOLD_CONNECTIONS}: holding {count} idle connections to {server_url()}"


# What each process's log held when a test began, so that a failing test's report shows what
# its API, worker or beat processes logged during it (the cause of a 500 is in the API's log).
_LOG_MARKS = pytest.StashKey[dict[int, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_LOG_MARKS] = {id(p): p.log_size() for p in Process.started}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        marks = item.stash.get(_LOG_MARKS, {})
        for process in Process.started:  # those started during the test from their start
            tail = process.logged_since(marks.get(id(process), 0))
            if tail:
                report.sections.append(
                    (f"{process.name} log during the test ({process.log}), its end", tail)
                )
    return report


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated database; the owner's URL (tests look behind the service's back)."""
    server = _plain(find_postgres())
    dbname = f"bulkredeem_test_{os.getpid()}"
    admin = _with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    url = _with_database(server, dbname)
    # The service connects as its own role (made by the migrations), the tests as the owner.
    from core.db import app_url_from
    from core.settings import get_settings

    get_settings.cache_clear()
    app_url = app_url_from(url)

    storage = tmp_path_factory.mktemp("storage")
    os.environ["DATABASE_ADMIN_URL"] = url
    os.environ["DATABASE_URL"] = app_url
    os.environ["STORAGE_URL"] = storage.as_uri()
    from core import db, migrate

    get_settings.cache_clear()
    db.dispose_engine()
    migrate.upgrade(url)
    # The demo's fixed ids (coupon 23456, customer 23599838) first, before any bulk test's
    # coupons or customers can take them: the tests that seed the demo then pass in any order.
    from core.demo import seed_demo
    from tests.dbtools import admin_transaction

    with admin_transaction() as session:
        seed_demo(session)
    yield url
    db.dispose_engine()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def org(database_url: str) -> tuple[int, str]:
    """A fresh org and its API key: tests are isolated from each other by org."""
    from core import keys
    from tests.dbtools import admin_transaction

    with admin_transaction() as session:
        created, issued = keys.create_org(session, f"test-{uuid.uuid4().hex[:12]}")
        return created.id, issued.key


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    from api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def auth(org: tuple[int, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {org[1]}"}


@pytest.fixture(scope="session")
def worker(database_url: str) -> Iterator[Process]:
    """A real Celery worker process on the test queue (solo pool: one job at a time)."""
    from core.settings import get_settings

    log = Path(os.environ.get("PYTEST_WORKER_LOG", "/tmp")) / f"bulkredeem-worker-{os.getpid()}.log"
    log.unlink(missing_ok=True)
    process = start_worker(os.environ.copy(), get_settings().queue_name, log)
    yield process
    process.stop()
