"""A chunk applier on a service connection, made as core.pipeline makes one, for the tests
that drive chunks by hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from core import jobs
from core.apply import ChunkApplier, load_series, prepare_connection
from core.db import admin_transaction, get_engine
from core.rows import CouponIdentifier, CustomerIdentifier, Mapping, RowChecker


@contextmanager
def chunk_applier(
    claimed: jobs.ClaimedJob, org_id: int, series_id: int, token: str
) -> Iterator[ChunkApplier]:
    """An applier for a job claimed with `token`, its files mapped by mobile and code."""
    mapping = Mapping(
        columns=dict(claimed.upload_headers),
        customer=CustomerIdentifier.MOBILE,
        coupon=CouponIdentifier.COUPON_CODE,
    )
    raw = get_engine().raw_connection()
    try:
        conn = raw.driver_connection
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
        )
    finally:
        raw.close()


@contextmanager
def claimed_applier(job_id: int, org_id: int, series_id: int, token: str) -> Iterator[ChunkApplier]:
    """The job claimed with `token`, and its applier."""
    with admin_transaction() as session:
        claimed = jobs.claim(session, job_id, token)
    assert claimed is not None
    with chunk_applier(claimed, org_id, series_id, token) as applier:
        yield applier
