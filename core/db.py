"""Engine and sessions, created lazily per process (never at import time, never across fork)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None


def sqlalchemy_url(url: str) -> str:
    """Accept plain postgres:// URLs and pin the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine() -> Engine:
    global _engine, _engine_pid, _sessionmaker
    if _engine is None or _engine_pid != os.getpid():
        # A forked child must not reuse the parent's sockets: drop them without closing.
        if _engine is not None:
            _engine.dispose(close=False)
        _engine = create_engine(
            sqlalchemy_url(get_settings().database_url),
            pool_pre_ping=True,
            # Our statements are short and, over temp tables without statistics, misestimated:
            # JIT compiled chunk statements for ~250 ms each, longer than they ran.
            connect_args={"options": "-c jit=off"},
            pool_size=10,
            max_overflow=20,
        )
        _engine_pid = os.getpid()
        _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def dispose_engine() -> None:
    global _engine, _sessionmaker
    if _engine is not None:
        _engine.dispose()
    _engine = None
    _sessionmaker = None


def new_session() -> Session:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker()


def set_org(session: Session, org_id: int) -> None:
    """Scope the current transaction to one org (read by row-level security policies)."""
    session.execute(text("SELECT set_config('app.org_id', :org, true)"), {"org": str(org_id)})


@contextmanager
def transaction(org_id: int | None = None) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    session = new_session()
    try:
        with session.begin():
            if org_id is not None:
                set_org(session, org_id)
            yield session
    finally:
        session.close()
