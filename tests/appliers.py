"""A chunk applier on a service connection, made as core.pipeline makes one, for the tests
that drive chunks by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from core.apply import ChunkApplier, ChunkOutcome, prepare_connection
from core.db import get_engine
from core.jobs.lease import ClaimedJob, claim
from core.lookups import load_series
from core.rows import Candidate, CouponIdentifier, CustomerIdentifier, Failure, Mapping, RowChecker
from core.settings import get_settings
from tests.dbtools import admin_transaction


@contextmanager
def chunk_applier(
    claimed: ClaimedJob,
    org_id: int,
    series_id: int,
    token: str,
    *,
    conn: psycopg.Connection[Any] | None = None,
    dry_run: bool = False,
) -> Iterator[ChunkApplier]:
    """An applier for a job claimed with `token`, its files mapped by mobile and code.

    On a service connection of its own, or on `conn` (the caller's, left open).
    """
    mapping = Mapping(
        columns=dict(claimed.upload_headers),
        customer=CustomerIdentifier.MOBILE,
        coupon=CouponIdentifier.COUPON_CODE,
    )
    raw = None
    if conn is None:
        raw = get_engine().raw_connection()
        conn = raw.driver_connection
    try:
        assert conn is not None
        conn.rollback()
        prepare_connection(conn)
        with conn.transaction():
            conn.execute("SELECT set_config('app.org_id', %s, true)", (str(org_id),))
            rules = load_series(conn, series_id)
        yield ChunkApplier(
            conn,
            job_id=claimed.id,
            org_id=org_id,
            token=token,
            series=rules,
            checker=RowChecker(mapping, claimed.created_at_ms, claimed.report_width),
            customer_key="mobile",
            lease_seconds=60,
            dry_run=dry_run,
        )
    finally:
        if raw is not None:
            raw.close()


@contextmanager
def claimed_applier(job_id: int, org_id: int, series_id: int, token: str) -> Iterator[ChunkApplier]:
    """The job claimed with `token`, and its applier."""
    with admin_transaction() as session:
        claimed = claim(session, job_id, token)
    assert claimed is not None
    with chunk_applier(claimed, org_id, series_id, token) as applier:
        yield applier


def apply_chunk(
    applier: ChunkApplier,
    items: list[Candidate | Failure],
    *,
    first_record: int,
    end_offset: int,
    next_record: int,
) -> ChunkOutcome:
    """Prepare and commit one chunk on the applier's own connection, as one call (the
    pipeline overlaps the two phases on two connections)."""
    prepared = applier.prepare(
        applier.conn,
        items,
        first_record=first_record,
        end_offset=end_offset,
        next_record=next_record,
    )
    return applier.commit(prepared)


@contextmanager
def explaining_connection(
    database_url: str, plans: list[dict[str, Any]]
) -> Iterator[psycopg.Connection[Any]]:
    """A connection in the service's role on which Postgres reports the plan of every statement
    it runs, as it ran it (auto_explain, JSON), into `plans`.

    The plans are the executed ones, prepared statements' generic plans included: what a
    separate EXPLAIN of the same text might plan differently. Loading auto_explain and its
    settings need a superuser (the tests' owner), the statements then run as the service's
    role, under row-level security, as in a worker.
    """

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        _, found, plan = message.partition("plan:\n")
        if found:
            plans.append(json.loads(plan))

    with psycopg.connect(database_url) as conn:
        conn.add_notice_handler(collect)
        try:
            conn.execute("LOAD 'auto_explain'")
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFile) as error:
            pytest.skip(f"the plans need auto_explain, loaded by a superuser: {error}")
        for name, value in (
            ("log_min_duration", "0"),
            ("log_format", "json"),
            # INFO always reaches the client, whatever client_min_messages says.
            ("log_level", "info"),
        ):
            conn.execute(f"SET auto_explain.{name} = '{value}'")
        role = get_settings().app_db_role
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.commit()
        yield conn
