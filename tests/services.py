"""Find the Postgres and Redis for the tests: the environment, else localhost, else embedded."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _url_reachable(url: str) -> bool:
    parts = urlsplit(url)
    return _reachable(parts.hostname or "127.0.0.1", parts.port or 0)


def find_postgres() -> str:
    """A server URL (any database on it) reachable by a superuser or a role that may create DBs."""
    # The owner's URL when both are given: the tests create databases and migrate them.
    url = os.environ.get("DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    if _reachable("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    from cli import devservices

    return devservices.ensure_postgres()


def find_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if _reachable("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    from cli import devservices

    return devservices.ensure_redis()
