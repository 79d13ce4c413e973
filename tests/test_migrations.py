"""Alembic's migrations run both ways on an empty database, and say what the models say."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

from core import migrate
from core.db import sqlalchemy_url
from core.models import Base
from tests.services import find_postgres


def _on_database(url: str, dbname: str) -> str:
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    return urlunsplit(urlsplit(plain)._replace(path="/" + dbname))


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new database of its own, so the test starts from nothing and leaves nothing."""
    server = find_postgres()
    name = f"bulkredeem_migrations_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _on_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _on_database(server, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(url: str) -> set[str]:
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_round_trips_on_an_empty_database(empty_database: str) -> None:
    models = set(Base.metadata.tables)

    migrate.upgrade(empty_database)
    assert _tables(empty_database) - {"alembic_version"} == models

    migrate.downgrade(empty_database, "base")
    assert _tables(empty_database) - {"alembic_version"} == set()

    migrate.upgrade(empty_database)
    assert _tables(empty_database) - {"alembic_version"} == models


def test_migrated_schema_matches_the_models(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    engine = create_engine(sqlalchemy_url(empty_database), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], "models and migrations disagree: write a migration"


def test_jobs_purged_before_0013_lose_their_row_errors_cells(empty_database: str) -> None:
    """Retention now empties the cells with the file; 0013 does it for jobs purged before."""
    migrate.upgrade(empty_database, "0012")
    with psycopg.connect(empty_database, autocommit=True) as conn:
        org = conn.execute("INSERT INTO orgs (name) VALUES ('o') RETURNING id").fetchone()
        assert org is not None
        series = conn.execute(
            "INSERT INTO coupon_series (org_id, name) VALUES (%s, 's') RETURNING id", org
        ).fetchone()
        assert series is not None
        jobs = []
        for purged in (True, False):
            row = conn.execute(
                """
                INSERT INTO upload_jobs (org_id, series_id, customer_identifier,
                    coupon_identifier, upload_headers, delimiter, has_header, encoding,
                    report_header, file_name, file_size, file_sha256, storage_key,
                    file_deleted_at)
                VALUES (%s, %s, 'MOBILE', 'COUPON_CODE', '{}', ',', true, 'utf-8', '{}',
                    'f.csv', 1, repeat('0', 64), 'k', CASE WHEN %s THEN now() END)
                RETURNING id
                """,
                (org[0], series[0], purged),
            ).fetchone()
            assert row is not None
            jobs.append(row[0])
            conn.execute(
                "INSERT INTO job_row_errors (job_id, row_number, org_id, code, message, cells)"
                " VALUES (%s, 2, %s, 701, 'm', ARRAY['9988776655', 'X'])",
                (row[0], org[0]),
            )
    migrate.upgrade(empty_database)
    with psycopg.connect(empty_database) as conn:
        cells = dict(
            conn.execute("SELECT job_id, cells FROM job_row_errors ORDER BY job_id").fetchall()
        )
    assert cells == {jobs[0]: [], jobs[1]: ["9988776655", "X"]}
