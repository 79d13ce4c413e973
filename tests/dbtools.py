"""The tests' way round the service's role: transactions as the owner, who sees every org."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from core.db import sqlalchemy_url
from core.settings import get_settings

_admin: tuple[int, str, Engine] | None = None


def _admin_engine() -> Engine:
    """The owner's pool in this process, for the owner's URL of the settings of now: a
    forked child, or a test that points the settings elsewhere, gets a pool of its own."""
    global _admin
    settings = get_settings()
    url = sqlalchemy_url(settings.database_admin_url or settings.database_url)
    if _admin is None or _admin[:2] != (os.getpid(), url):
        if _admin is not None:
            # Another process's sockets are dropped, not closed; this process's are closed.
            _admin[2].dispose(close=_admin[0] == os.getpid())
        _admin = (os.getpid(), url, create_engine(url, pool_pre_ping=True, pool_size=2))
    return _admin[2]


@contextmanager
def admin_transaction() -> Iterator[Session]:
    """A transaction as the owner role (DATABASE_ADMIN_URL, else DATABASE_URL): committed on
    success, rolled back on error. Setting up and checking what the service's role may not
    see; the service itself never has it."""
    with Session(_admin_engine(), expire_on_commit=False) as session, session.begin():
        yield session
