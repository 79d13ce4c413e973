"""Find the Postgres and Redis for the tests: the environment, else localhost, else embedded."""

from __future__ import annotations

import os

from cli.supervisor import answers_tcp


def find_postgres() -> str:
    """A server URL (any database on it) reachable by a superuser or a role that may create DBs."""
    # The owner's URL when both are given: the tests create databases and migrate them.
    url = os.environ.get("DATABASE_ADMIN_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    if answers_tcp("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    from cli.embedded import postgres

    return postgres.ensure_postgres()


def find_redis() -> str:
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if answers_tcp("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    from cli.embedded import redis as embedded_redis

    return embedded_redis.ensure_redis()
