"""Postgres and Redis for the bench: found like `make test` finds them, with a database of its own.

DATABASE_URL / REDIS_URL when set, else servers on 127.0.0.1:5432 / 6379 when they answer, else
the embedded ones of cli/embedded/. The bench database is dropped and created again at
every run, and migrated with the project's own migrations; the chaos run names a database of
its own and drops it at its end.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from cli.supervisor import answers_tcp

BENCH_DATABASE = "bulkredeem_bench"
# The service's connections run without JIT (core/db.py); the bench's own do the same.
CONNECT_OPTIONS = "-c jit=off"


@dataclass(frozen=True)
class Services:
    database_url: str  # the bench database, as the service connects to it
    admin_url: str | None  # DATABASE_ADMIN_URL moved to the bench database, when set
    redis_url: str
    where: str  # how they were found, for the report
    database: str = BENCH_DATABASE

    @property
    def owner_url(self) -> str:
        """The role that migrates, seeds and runs the lower bound and the naive baseline."""
        return self.admin_url or self.database_url


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database (keeps the query, e.g. a socket host)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


# `--postgres tuned`: what a server given to a bulk-load service would be set to on this
# machine (24 GiB), rather than Debian's defaults (shared_buffers 128MB, max_wal_size 1GB).
# Durability is untouched: fsync and synchronous_commit stay on.
TUNED_SETTINGS = {
    "shared_buffers": "4GB",  # a million-row run's tables and indexes (~1.2 GB) stay cached
    "effective_cache_size": "16GB",
    "max_wal_size": "8GB",  # no checkpoint forced by WAL volume in the middle of a run
    "checkpoint_timeout": "15min",
    "wal_buffers": "64MB",
    "maintenance_work_mem": "1GB",
    "max_connections": "100",
}


def tuned_postgres(pgdata: Path) -> str:
    """A private Postgres (pgserver's binaries) in `pgdata` with TUNED_SETTINGS; its owner URL.

    It stops when the bench exits; its data stays for EXPLAIN until the next tuned run.
    """
    from cli.embedded import postgres

    pgserver = postgres.pgserver_module()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
    server.ensure_pgdata_inited()
    lines = "".join(f"{name} = '{value}'\n" for name, value in TUNED_SETTINGS.items())
    # Later lines win: appended at every run, the file says what this run used.
    with (pgdata / "postgresql.auto.conf").open("a") as conf:
        conf.write("# bench --postgres tuned\n" + lines)
    server.start()
    return str(server.get_uri(database="postgres"))


def find_postgres() -> tuple[str, str | None, str]:
    """The server's URL (DATABASE_URL, else the local one, else embedded), DATABASE_ADMIN_URL
    when set, and how it was found."""
    url = os.environ.get("DATABASE_URL")
    admin = os.environ.get("DATABASE_ADMIN_URL")
    if url:
        return url, admin, "DATABASE_URL"
    if admin:
        return admin, None, "DATABASE_ADMIN_URL"
    if answers_tcp("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres", None, "Postgres on 127.0.0.1:5432"
    from cli.embedded import postgres

    return postgres.ensure_postgres(), None, "embedded Postgres (.data/pg)"


def find(
    postgres: str = "found", database: str = BENCH_DATABASE, redis_url: str | None = None
) -> Services:
    """The services: as `make test` finds them, or (`postgres="tuned"`) a private tuned
    Postgres in bench/out/pg; `database` names the run's own; Redis is `redis_url` when
    given (the chaos run's own), else found as usual."""
    where = []
    admin: str | None = None
    if postgres == "tuned":
        pgdata = Path(__file__).resolve().parent / "out" / "pg"
        url = tuned_postgres(pgdata)
        where.append("private tuned Postgres (bench/out/pg)")
    else:
        url, admin, found_where = find_postgres()
        where.append(found_where)
    if redis_url:
        where.append(f"Redis of its own ({redis_url})")
    elif os.environ.get("REDIS_URL"):
        redis_url = os.environ["REDIS_URL"]
        where.append("REDIS_URL")
    elif answers_tcp("127.0.0.1", 6379):
        redis_url = "redis://127.0.0.1:6379/0"
        where.append("Redis on 127.0.0.1:6379")
    else:
        from cli.embedded import redis as embedded_redis

        redis_url = embedded_redis.ensure_redis()
        where.append("embedded Redis (.data/redis)")
    return Services(
        database_url=with_database(url, database),
        admin_url=with_database(admin, database) if admin else None,
        redis_url=redis_url,
        where=", ".join(where),
        database=database,
    )


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(url, options=CONNECT_OPTIONS, **kwargs)


def recreate_database(services: Services) -> None:
    """Drop the run's database (ending its sessions) and create it empty."""
    with psycopg.connect(with_database(services.owner_url, "postgres"), autocommit=True) as conn:
        name = sql.Identifier(services.database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def drop_database(services: Services) -> None:
    """Drop the run's database, ending whatever sessions it still has."""
    with psycopg.connect(with_database(services.owner_url, "postgres"), autocommit=True) as conn:
        name = sql.Identifier(services.database)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def migrate(services: Services) -> None:
    from core.migrate import upgrade

    upgrade(services.owner_url)


def create_org(services: Services, name: str) -> tuple[int, str]:
    """A new org and its API key, made by core.keys as `bulkredeem orgs create` makes them."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from core import keys
    from core.db import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(services.owner_url))
    try:
        with Session(engine) as session, session.begin():
            org, issued = keys.create_org(session, name)
            return org.id, issued.key
    finally:
        engine.dispose()


def settle(services: Services, tables: tuple[str, ...] = ("customers", "coupons")) -> None:
    """What a long-running database would have: statistics, a visibility map, no dirty backlog.

    Done before each measured phase, so that none of them pays for the previous one's writes
    (a checkpoint landing in the middle, hint bits left to set).
    """
    with connect(services.owner_url, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
        # CHECKPOINT needs a superuser (or pg_checkpoint); without it the phases simply share
        # whatever checkpoints come.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def reset(services: Services) -> None:
    """Empty what a run writes (redemptions, counters, jobs, row errors); keep reference data."""
    with connect(services.owner_url, autocommit=True) as conn:
        # CASCADE: every table that hangs off upload_jobs (row errors, dry runs, webhooks).
        conn.execute("TRUNCATE redemptions, coupon_counters, upload_jobs CASCADE")
    settle(services)


@dataclass(frozen=True)
class TableCounts:
    redemptions: int
    counted: int  # the sum of coupon_counters
    row_errors: int


def table_counts(services: Services) -> TableCounts:
    with connect(services.owner_url) as conn:
        row = conn.execute(
            """
            SELECT (SELECT count(*) FROM redemptions),
                (SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters),
                (SELECT count(*) FROM job_row_errors)
            """
        ).fetchone()
    assert row is not None
    return TableCounts(int(row[0]), int(row[1]), int(row[2]))


def server_description(services: Services) -> str:
    """The version, and the settings that weigh most on these figures."""
    shown = ("shared_buffers", "max_wal_size", "synchronous_commit", "fsync")
    with connect(services.owner_url) as conn:
        values = {}
        for name in ("server_version", *shown):
            row = conn.execute(f"SHOW {name}").fetchone()
            values[name] = str(row[0]) if row else "?"
    settings = ", ".join(f"{name} {values[name]}" for name in shown)
    return f"{values['server_version']}; {settings}"
