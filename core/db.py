"""Engine and sessions, created lazily per process (never at import time, never across fork)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy import CursorResult, Engine, Result, create_engine, text
from sqlalchemy.orm import Session

from core.settings import get_settings


def sqlalchemy_url(url: str) -> str:
    """Accept plain postgres:// URLs and pin the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def app_url_from(owner_url: str) -> str:
    """The owner's URL with the service's own role (and its password, if any) as the user."""
    settings = get_settings()
    parts = urlsplit(owner_url)
    user = quote(settings.app_db_role, safe="")
    if settings.app_db_password:
        user += ":" + quote(settings.app_db_password, safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def _overflow(pool_size: int) -> int:
    """Connections a pool opens beyond its size under a burst, and closes again: as many as
    it keeps, at most 10 (10 and 10 were the two pools' figures before they had settings)."""
    return min(pool_size, 10)


# Our statements are short and, over temp tables without statistics, misestimated: JIT
# compiled chunk statements for ~250 ms each, longer than they ran.
SESSION_OPTIONS = "-c jit=off"


class _PerProcess:
    """An engine made on first use in each process. A forked child must not reuse the
    parent's sockets: it drops them without closing them (they are the parent's still) and
    makes its own."""

    def __init__(self, make: Callable[[], Engine]) -> None:
        self._make = make
        self._made: tuple[int, Engine] | None = None

    def get(self) -> Engine:
        if self._made is None or self._made[0] != os.getpid():
            if self._made is not None:
                self._made[1].dispose(close=False)
            self._made = (os.getpid(), self._make())
        return self._made[1]

    def dispose(self) -> None:
        if self._made is not None:
            self._made[1].dispose()
            self._made = None


def _main_engine() -> Engine:
    return create_engine(
        sqlalchemy_url(get_settings().database_url),
        pool_pre_ping=True,
        connect_args={"options": SESSION_OPTIONS},
        pool_size=get_settings().db_main_pool_size,
        max_overflow=_overflow(get_settings().db_main_pool_size),
    )


POLL_APPLICATION = "bulkredeem poll"  # how the poll connections show in pg_stat_activity


def _poll_engine() -> Engine:
    return create_engine(
        sqlalchemy_url(get_settings().database_url),
        isolation_level="AUTOCOMMIT",
        connect_args={"options": SESSION_OPTIONS, "application_name": POLL_APPLICATION},
        # Kept open between requests: a poll that has to open a connection waits for a
        # new backend. With 10, bursts of 50 pollers churned overflow connections and
        # their p99 was 46-65 ms on an idle machine; with 30 it was 12-19 ms.
        pool_size=get_settings().db_poll_pool_size,
        max_overflow=_overflow(get_settings().db_poll_pool_size),
    )


def _aside_engine() -> Engine:
    """A small pool of its own for `transaction_aside`."""
    return create_engine(
        sqlalchemy_url(get_settings().database_url),
        connect_args={"options": SESSION_OPTIONS},
        pool_pre_ping=True,
        pool_size=1,
        max_overflow=4,
    )


_main = _PerProcess(_main_engine)
_poll = _PerProcess(_poll_engine)
_aside = _PerProcess(_aside_engine)


def get_engine() -> Engine:
    return _main.get()


def get_poll_engine() -> Engine:
    """Connections for GET /v1/jobs/{id} alone (core/jobs/poll.py): autocommit, so that its
    one query goes alone, and no ping before each use, a round trip of its own that cost polls
    ~10 ms of their p99 while a job ran (bench/README.md). A connection the server dropped
    fails a poll's first try; the poll then drops the pool (after a restart every connection
    in it is dead) and asks again on a new connection.

    The pool opens a connection when a poll finds none idle and keeps up to
    `db_poll_pool_size` of them from then on: nothing is opened at startup, so an idle API
    holds none of the server's connection slots (a Postgres that serves other databases may
    have few to spare), and after the first burst the next one finds them open."""
    return _poll.get()


def dispose_engine() -> None:
    """Close this process's pools; the next use opens new ones, as the settings are then."""
    _aside.dispose()
    _main.dispose()
    _poll.dispose()


def new_session() -> Session:
    return Session(get_engine(), expire_on_commit=False)


def set_org(session: Session, org_id: int) -> None:
    """Scope the current transaction to one org (read by row-level security policies)."""
    session.execute(text("SELECT set_config('app.org_id', :org, true)"), {"org": str(org_id)})


@contextmanager
def _unit_of_work(session: Session, org_id: int | None) -> Iterator[Session]:
    """`session`'s one transaction, scoped to `org_id` when given: committed on success,
    rolled back on error, and the session closed either way."""
    try:
        with session.begin():
            if org_id is not None:
                set_org(session, org_id)
            yield session
    finally:
        session.close()


def transaction(org_id: int | None = None) -> AbstractContextManager[Session]:
    """One unit of work: commit on success, roll back on error."""
    return _unit_of_work(new_session(), org_id)


def transaction_aside(org_id: int | None = None) -> AbstractContextManager[Session]:
    """A short transaction on a connection of its own, never one of the request pool's: for a
    write that must stand whatever becomes of the request (a key's last use), made while the
    request may hold a pooled connection, which waiting on that same pool could deadlock."""
    return _unit_of_work(Session(_aside.get(), expire_on_commit=False), org_id)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE/DELETE/INSERT changed. Session.execute is typed to return any
    Result; a statement that changes rows returns a CursorResult, which has the count: any
    other is a mistake to raise, not a count of 0 (a lost lease, say) to act on."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"not the result of a statement that changes rows: {type(result)}")
    return result.rowcount
