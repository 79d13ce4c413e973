"""The embedded Postgres and Redis that `make run` and the tests fall back on.

This is the one place they run when local servers exist, so it runs them for real: start, answer
this process and another one, keep their data across a restart, stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from cli.embedded import postgres as embedded_postgres
from cli.embedded import redis as embedded_redis
from core import migrate
from tests.devrun_harness import embedded_workdir

pytestmark = pytest.mark.timeout(120)

# Joins the embedded Postgres, prints its URL, and holds it until its stdin closes.
HOLDING_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from cli.embedded import postgres as embedded_postgres

    print(embedded_postgres.ensure_postgres(Path(sys.argv[1])), flush=True)
    sys.stdin.read()
    """
)

OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    import psycopg
    import redis

    pg_url, redis_url = sys.argv[1:]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM orgs").fetchone() == (0,)
    assert redis.Redis.from_url(redis_url).get("written-by") == b"the test process"
    """
)


def _postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


@pytest.fixture
def data() -> Iterator[Path]:
    with embedded_workdir() as path:
        yield path / "data"


def test_embedded_services_start_serve_other_processes_persist_and_stop(data: Path) -> None:
    try:
        pg_url = embedded_postgres.ensure_postgres(data)
        redis_url = embedded_redis.ensure_redis(data)

        assert pg_url.startswith("postgresql://")
        assert redis_url.startswith("redis://127.0.0.1:")
        assert (data / "pg" / "PG_VERSION").exists()
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("bulkredeem",)
        # The URL goes through SQLAlchemy and Alembic unchanged, as `make run` uses it.
        migrate.upgrade(pg_url)
        redis.Redis.from_url(redis_url).set("written-by", "the test process")

        # Uvicorn and Celery are other processes: they must reach both by URL alone.
        subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS, pg_url, redis_url], check=True, timeout=60
        )
        # Asking again joins the running servers.
        assert embedded_postgres.ensure_postgres(data) == pg_url
        assert embedded_redis.ensure_redis(data) == redis_url
    finally:
        embedded_redis.stop_redis(data)
        embedded_postgres.stop_postgres(data)

    assert not _redis_answers(redis_url)
    assert not _postgres_answers(pg_url)

    # Started again, both still hold what they held (the data lives in data/pg, data/redis).
    try:
        pg_url = embedded_postgres.ensure_postgres(data)
        redis_url = embedded_redis.ensure_redis(data)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT to_regclass('orgs') IS NOT NULL").fetchone() == (True,)
        assert redis.Redis.from_url(redis_url).get("written-by") == b"the test process"

        # Another process joins the server (an admin command beside `make run`): letting go
        # here leaves it running for that one, which stops it when it exits.
        other = subprocess.Popen(
            [sys.executable, "-c", HOLDING_PROCESS, str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == pg_url
        outcome = embedded_postgres.stop_postgres(data)
        assert outcome == f"left running for process {other.pid} (embedded, {data / 'pg'})"
        assert _postgres_answers(pg_url)
        other.stdin.close()
        assert other.wait(timeout=60) == 0
    finally:
        # Only these: the other tests may be running on the default embedded servers.
        embedded_redis.stop_redis(data)
        embedded_postgres.stop_postgres(data)
    assert not _redis_answers(redis_url)
    assert not _postgres_answers(pg_url)


def test_the_embedded_database_is_used_exactly_when_no_database_url_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DATABASE_URL", "DATABASE_ADMIN_URL"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("BULKREDEEM_" + name, raising=False)
    assert not embedded_postgres.database_in_environment()
    monkeypatch.setenv("DATABASE_URL", "")  # set but empty: unset, as compose passes it
    assert not embedded_postgres.database_in_environment()
    monkeypatch.delenv("DATABASE_URL")
    for name in ("DATABASE_URL", "BULKREDEEM_DATABASE_URL", "BULKREDEEM_DATABASE_ADMIN_URL"):
        with monkeypatch.context() as env:
            env.setenv(name, "postgresql://postgres@127.0.0.1:5432/elsewhere")
            assert embedded_postgres.database_in_environment(), name
            # A URL set: nothing is started, nothing in the environment changes.
            assert embedded_postgres.use_embedded_database(tmp_path, create=True) is None
            assert not (tmp_path / "pg").exists()
            assert os.environ.get("DATABASE_ADMIN_URL") is None


def test_embedded_redis_left_behind_by_a_killed_owner_is_adopted(tmp_path: Path) -> None:
    """A `make run` killed with SIGKILL leaves Redis running; the next start reuses and owns it."""
    data = tmp_path / "data"
    owner = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path; from cli.embedded import redis;"
            "print(redis.ensure_redis(Path(sys.argv[1])), flush=True); os._exit(0)",
            str(data),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    orphan_url = owner.stdout.strip()
    try:
        assert _redis_answers(orphan_url)  # os._exit skipped the owner's cleanup

        assert embedded_redis.ensure_redis(data) == orphan_url
    finally:
        embedded_redis.stop_redis(data)
    assert not _redis_answers(orphan_url)
