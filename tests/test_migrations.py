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
