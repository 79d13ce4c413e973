"""The lease heartbeat: it keeps a short lease alive between chunk commits, and only its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import text

from core import pipeline
from core.db import transaction
from core.jobs import lease as job_lease
from core.jobs import sweep as job_sweep
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_job, create_series

LEASE_SECONDS = 2  # the beat then runs every 0.5 s


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "lease_seconds", LEASE_SECONDS)


@pytest.fixture
def job(org: tuple[int, str]) -> tuple[int, int]:
    """A queued one-row job that would redeem; (org id, job id)."""
    org_id = org[0]
    series = create_series(org_id)
    customer = create_customer(org_id, mobile="9000000001")
    create_coupon(org_id, series, "CODE", issued_to=customer)
    lines = ["date,till,mobile,code", f"{SAMPLE_MS},T1,9000000001,CODE"]
    return org_id, create_job(org_id, series, lines)


def lease(job_id: int) -> tuple[str | None, datetime | None, bool]:
    """The job's lease owner, its expiry, and whether it is still in the future (DB clock)."""
    with admin_transaction() as session:
        row = session.execute(
            text(
                "SELECT lease_owner, lease_expires_at, "
                "coalesce(lease_expires_at > clock_timestamp(), false) AS live "
                "FROM upload_jobs WHERE id = :id"
            ),
            {"id": job_id},
        ).one()
    return row.lease_owner, row.lease_expires_at, row.live


def live_lease(job_id: int) -> tuple[str, datetime]:
    """The owner and expiry of a lease that must be held and in the future right now."""
    owner, until, live = lease(job_id)
    assert owner is not None and until is not None and live, "the lease lapsed"
    return owner, until


def claim(org_id: int, job_id: int, token: str) -> bool:
    with transaction(org_id) as session:
        return job_lease.claim(session, job_id, token) is not None


def heartbeat_threads(job_id: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"heartbeat-{job_id}"]


def test_the_heartbeat_renews_the_lease_and_stops_when_its_context_ends(
    job: tuple[int, int],
) -> None:
    org_id, job_id = job
    assert claim(org_id, job_id, "worker-1")
    _, claimed_until = live_lease(job_id)
    with pipeline._heartbeat(job_id, org_id, "worker-1"):
        seen: list[datetime] = []
        # Past the lease's length: without a renewal the lease would have lapsed by now.
        for _ in range(5):
            time.sleep(0.6)
            owner, until = live_lease(job_id)
            assert owner == "worker-1"
            seen.append(until)
            # Held and renewed: nobody else may take the job meanwhile.
            assert not claim(org_id, job_id, "intruder")
        assert len(heartbeat_threads(job_id)) == 1
    assert seen == sorted(seen) and seen[0] > claimed_until and seen[-1] > seen[0]
    # Ended with its context: the thread is gone and the expiry no longer moves.
    assert heartbeat_threads(job_id) == []
    _, stopped_at = live_lease(job_id)
    time.sleep(1.2)
    assert lease(job_id)[1] == stopped_at >= seen[-1]


def test_a_heartbeat_stops_renewing_once_another_worker_took_the_lease_over(
    job: tuple[int, int],
) -> None:
    org_id, job_id = job
    assert claim(org_id, job_id, "old-owner")
    with pipeline._heartbeat(job_id, org_id, "old-owner"):
        time.sleep(0.7)
        assert len(heartbeat_threads(job_id)) == 1
        # The old worker stalls past its lease (made to lapse here), the sweeper records
        # the loss, and a new one claims.
        with admin_transaction() as session:
            session.execute(
                text(
                    "UPDATE upload_jobs SET lease_expires_at = clock_timestamp() - interval '1 s' "
                    "WHERE id = :id"
                ),
                {"id": job_id},
            )
            assert job_id in job_sweep.sweep(session)
        assert claim(org_id, job_id, "new-owner")
        _, taken_until = live_lease(job_id)
        # The old heartbeat learns at its next beat that the lease is not its own, and ends.
        deadline = time.monotonic() + 5
        while heartbeat_threads(job_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert heartbeat_threads(job_id) == []
        time.sleep(0.7)
        owner, until, _ = lease(job_id)
        assert owner == "new-owner"
        assert until == taken_until  # nobody renewed the new owner's lease for it
    with transaction(org_id) as session:
        assert job_lease.heartbeat(session, job_id, "old-owner") is False
        assert job_lease.heartbeat(session, job_id, "new-owner") is True


@pytest.fixture
def customers_locked(database_url: str) -> Iterator[psycopg.Connection[object]]:
    """Holds the customers table locked: a chunk stalls resolving its rows, before committing."""
    conn: psycopg.Connection[object] = psycopg.connect(database_url)
    try:
        conn.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        yield conn
    finally:
        conn.close()  # ends the transaction and its lock, whatever happened


def test_a_slice_stalled_before_its_first_commit_keeps_its_lease(
    job: tuple[int, int], customers_locked: psycopg.Connection[object]
) -> None:
    org_id, job_id = job
    results: list[object] = []
    slice_thread = threading.Thread(
        target=lambda: results.append(pipeline.run_slice(job_id, slice_seconds=60)), daemon=True
    )
    slice_thread.start()
    try:
        seen: list[datetime] = []
        for _ in range(5):  # 3 s, longer than the lease
            time.sleep(0.6)
            seen.append(live_lease(job_id)[1])
            assert not claim(org_id, job_id, "intruder")
        assert slice_thread.is_alive() and results == []  # still stalled in its first chunk
        with admin_transaction() as session:
            processed = session.execute(
                text("SELECT rows_processed FROM upload_jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()
        assert processed == 0  # no chunk committed: only the heartbeat renewed the lease
        assert seen == sorted(seen) and seen[-1] > seen[0]
    finally:
        customers_locked.rollback()
        slice_thread.join(timeout=30)
    assert results == [pipeline.SliceResult.DONE]
    owner, until, _ = lease(job_id)
    assert (owner, until) == (None, None)  # a finished job holds no lease
    assert heartbeat_threads(job_id) == []
    with admin_transaction() as session:
        status, succeeded = session.execute(
            text("SELECT status, rows_succeeded FROM upload_jobs WHERE id = :id"), {"id": job_id}
        ).one()
    assert (status, succeeded) == ("COMPLETED", 1)


def test_a_beat_passes_over_the_row_its_own_chunk_holds_and_renews_once_it_is_free(
    job: tuple[int, int], database_url: str
) -> None:
    org_id, job_id = job
    assert claim(org_id, job_id, "worker-1")
    _, claimed_until = live_lease(job_id)
    with psycopg.connect(database_url) as chunk:  # as the chunk's fence holds it
        chunk.execute("SELECT 1 FROM upload_jobs WHERE id = %s FOR UPDATE", (job_id,))
        started = time.monotonic()
        with transaction(org_id) as session:
            assert job_lease.heartbeat(session, job_id, "worker-1") is True  # still ours
            assert job_lease.heartbeat(session, job_id, "intruder") is False
        assert time.monotonic() - started < 1  # did not wait for the chunk
        assert lease(job_id)[1] == claimed_until
    with transaction(org_id) as session:
        assert job_lease.heartbeat(session, job_id, "worker-1") is True
    assert live_lease(job_id)[1] > claimed_until
