"""Fault injection against real processes: workers killed, messages doubled, Redis flushed,
connections cut, jobs racing. Each test checks the exact final counts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery import Celery
from sqlalchemy import text

from core.db import transaction
from tests import processes
from tests.dbtools import admin_transaction
from tests.factories import (
    SAMPLE_MS,
    bulk_customers_and_coupons,
    create_customer,
    create_job,
    create_series,
)

TERMINAL = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED")
# Short leases and a fast sweeper, so that recovery takes seconds, not minutes.
FAST = {
    "BULKREDEEM_LEASE_SECONDS": "3",
    "BULKREDEEM_SWEEP_INTERVAL_SECONDS": "1",
    "BULKREDEEM_QUEUED_REQUEUE_SECONDS": "2",
    "BULKREDEEM_CHUNK_ROWS": "2000",
}


class Rig:
    """A queue of the test's own, with workers and beat on it, and a doorbell to ring."""

    def __init__(self, tmp_path: Path, redis_url: str | None = None, **settings: str) -> None:
        self.tmp_path = tmp_path
        self.queue = f"faults-{uuid.uuid4().hex[:8]}"
        overrides = {**FAST, **settings, "BULKREDEEM_QUEUE_NAME": self.queue}
        if redis_url:
            overrides["REDIS_URL"] = redis_url
        self.env = processes.service_env(**overrides)
        self.broker = Celery(broker=self.env["REDIS_URL"])
        self.children: list[processes.Process] = []

    def worker(self, name: str) -> processes.Process:
        child = processes.worker(self.env, self.queue, self.tmp_path / f"{name}.log")
        self.children.append(child)
        return child

    def beat(self) -> processes.Process:
        child = processes.beat(self.env, self.tmp_path, self.tmp_path / "beat.log")
        self.children.append(child)
        return child

    def enqueue(self, job_id: int) -> None:
        self.broker.send_task("bulkredeem.process_job", args=[job_id], queue=self.queue)

    def close(self) -> None:
        for child in self.children:
            child.stop()
        self.broker.close()


@pytest.fixture
def rig(tmp_path: Path, database_url: str) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def job(job_id: int) -> dict[str, Any]:
    with admin_transaction() as session:
        row = session.execute(text("SELECT * FROM upload_jobs WHERE id = :id"), {"id": job_id})
        return dict(row.one()._mapping)


def wait_until(predicate: Any, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_for_end(job_id: int, timeout: float = 180) -> dict[str, Any]:
    wait_until(lambda: job(job_id)["status"] in TERMINAL, timeout, f"job {job_id} to end")
    return job(job_id)


def in_chunk(database_url: str) -> int | None:
    """The backend of a worker that is inside a chunk transaction right now, if any."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            """
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND xact_start IS NOT NULL AND query ILIKE '%%br_stage%%'
            LIMIT 1
            """
        ).fetchone()
    return None if row is None else int(row[0])


def final_counts(org_id: int, job_id: int) -> dict[str, int]:
    with transaction(org_id) as session:
        row = session.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM redemptions WHERE job_id = :job) AS redemptions,
                  (SELECT count(DISTINCT row_number) FROM redemptions WHERE job_id = :job)
                      AS distinct_rows,
                  (SELECT count(*) FROM job_row_errors WHERE job_id = :job) AS row_errors,
                  (SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters
                   WHERE org_id = :org) AS counters,
                  (SELECT count(*) FROM redemptions WHERE org_id = :org) AS org_redemptions
                """
            ),
            {"job": job_id, "org": org_id},
        ).one()
    return dict(row._mapping)


def good_and_bad_file(org_id: int, series: int, rows: int, database_url: str) -> tuple[int, int]:
    """A job over `rows` rows, every 500th an unknown coupon; returns (job id, bad rows)."""
    base = 3_000_000_000 + org_id * 1_000_000
    bulk_customers_and_coupons(database_url, org_id, series, rows, mobile_base=base)
    bad = 0
    lines = ["date,till,mobile,code"]
    for i in range(rows):
        code = f"C{i:08d}"
        if i % 500 == 499:
            code, bad = "NO-SUCH-COUPON", bad + 1
        lines.append(f"{SAMPLE_MS + i},T1,{base + i},{code}")
    return create_job(org_id, series, lines), bad


def assert_exactly_once(org_id: int, job_id: int, rows: int, bad: int) -> None:
    done = job(job_id)
    assert done["status"] == "COMPLETED_WITH_ERRORS", done
    assert (done["rows_processed"], done["rows_succeeded"], done["rows_failed"]) == (
        rows,
        rows - bad,
        bad,
    )
    counts = final_counts(org_id, job_id)
    assert counts == {
        "redemptions": rows - bad,
        "distinct_rows": rows - bad,
        "row_errors": bad,
        "counters": rows - bad,
        "org_redemptions": rows - bad,
    }


def kill_mid_chunk(worker: processes.Process, database_url: str) -> None:
    """SIGKILL the worker while one of its chunk transactions is open."""
    wait_until(lambda: in_chunk(database_url) is not None, 60, "a chunk in flight")
    worker.kill()


def terminate_mid_chunk(database_url: str) -> None:
    """pg_terminate_backend on a worker's connection while its chunk transaction is open."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        backend = in_chunk(database_url)
        if backend is not None:
            with psycopg.connect(database_url, autocommit=True) as conn:
                row = conn.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()
            if row == (True,):
                return
        time.sleep(0.01)
    raise AssertionError("no chunk transaction to terminate")


def test_worker_killed_mid_chunk_resumes_and_applies_each_row_once(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    job_id, bad = good_and_bad_file(org_id, series, 40_000, database_url)
    first = rig.worker("first")
    rig.enqueue(job_id)
    wait_until(lambda: job(job_id)["rows_processed"] >= 4_000, 60, "two chunks")
    kill_mid_chunk(first, database_url)
    stopped_at = job(job_id)
    assert stopped_at["status"] == "RUNNING"
    assert 0 < stopped_at["rows_processed"] < 40_000

    rig.beat()  # the sweeper hands the job on once the dead worker's lease lapses
    rig.worker("second")
    wait_for_end(job_id)
    assert_exactly_once(org_id, job_id, 40_000, bad)
    assert job(job_id)["attempts"] == 2


def test_worker_killed_twice_on_the_same_job_still_applies_each_row_once(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    job_id, bad = good_and_bad_file(org_id, series, 40_000, database_url)
    rig.beat()
    first = rig.worker("first")
    rig.enqueue(job_id)
    wait_until(lambda: job(job_id)["rows_processed"] >= 4_000, 60, "progress")
    kill_mid_chunk(first, database_url)
    after_first = job(job_id)["rows_processed"]

    second = rig.worker("second")
    wait_until(lambda: job(job_id)["rows_processed"] >= after_first + 4_000, 90, "progress again")
    kill_mid_chunk(second, database_url)
    assert job(job_id)["status"] == "RUNNING"

    rig.worker("third")
    wait_for_end(job_id)
    assert_exactly_once(org_id, job_id, 40_000, bad)
    assert job(job_id)["attempts"] == 3


def test_the_same_message_delivered_twice_at_once_applies_once(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    job_id, bad = good_and_bad_file(org_id, series, 20_000, database_url)
    one, two = rig.worker("one"), rig.worker("two")
    rig.enqueue(job_id)
    rig.enqueue(job_id)
    wait_for_end(job_id)
    assert_exactly_once(org_id, job_id, 20_000, bad)
    # Both deliveries ran; whichever came second found the lease taken (or the job done).
    wait_until(
        lambda: "not_claimed" in one.text() + two.text(), 30, "the second delivery to give up"
    )
    assert job(job_id)["attempts"] == 1


def test_redis_flushed_and_restarted_loses_no_job(
    tmp_path: Path, org: tuple[int, str], database_url: str
) -> None:
    server = processes.RedisServer(tmp_path)
    server.start()
    rig = Rig(tmp_path, redis_url=server.url)
    try:
        org_id = org[0]
        series = create_series(org_id)
        base = 2_000_000_000 + org_id * 1_000_000
        total = 30_000
        bulk_customers_and_coupons(database_url, org_id, series, total, mobile_base=base)
        jobs_made = []
        for part in range(3):
            rows = range(part * 10_000, (part + 1) * 10_000)
            lines = ["date,till,mobile,code"] + [
                f"{SAMPLE_MS + i},T1,{base + i},C{i:08d}" for i in rows
            ]
            jobs_made.append(create_job(org_id, series, lines))
        rig.worker("worker")
        rig.beat()
        for job_id in jobs_made:
            rig.enqueue(job_id)
        wait_until(lambda: job(jobs_made[0])["rows_processed"] > 0, 60, "the first job to run")
        assert job(jobs_made[2])["status"] == "QUEUED"

        server.client().flushall()
        server.stop()
        time.sleep(1)
        server.start()

        for job_id in jobs_made:
            assert wait_for_end(job_id)["status"] == "COMPLETED"
        counts = [final_counts(org_id, job_id)["redemptions"] for job_id in jobs_made]
        assert counts == [10_000, 10_000, 10_000]
        assert final_counts(org_id, jobs_made[0])["counters"] == total
    finally:
        rig.close()
        server.stop()


def test_worker_connection_terminated_mid_chunk_never_completes_with_rows_missing(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    job_id, bad = good_and_bad_file(org_id, series, 40_000, database_url)
    rig.beat()
    rig.worker("worker")
    rig.enqueue(job_id)
    wait_until(lambda: job(job_id)["rows_processed"] >= 4_000, 60, "progress")
    terminate_mid_chunk(database_url)
    done = wait_for_end(job_id)
    # Recovered (the slice failed, the lease was let go, the sweeper retried): every row once.
    assert_exactly_once(org_id, job_id, 40_000, bad)
    assert done["attempts"] >= 2


def test_two_jobs_racing_for_the_same_single_use_coupons_redeem_each_once(
    rig: Rig, org: tuple[int, str]
) -> None:
    org_id = org[0]
    series = create_series(org_id, any_user=True, max_redemptions_per_coupon=1)
    racers = [create_customer(org_id, mobile=f"77{org_id:06d}{n}") for n in (1, 2)]
    coupons = 10_000
    with transaction(org_id) as session:
        session.execute(
            text(
                "INSERT INTO coupons (org_id, series_id, code) "
                "SELECT :org, :series, 'R' || lpad(i::text, 5, '0') FROM generate_series(0, :n) i"
            ),
            {"org": org_id, "series": series, "n": coupons - 1},
        )
    made = []
    for n, customer in enumerate(racers):
        mobile = f"77{org_id:06d}{n + 1}"
        # Different bill numbers: the rows are not duplicates of each other, only rivals.
        lines = ["date,till,mobile,code,bill"] + [
            f"{SAMPLE_MS + i},T1,{mobile},R{i:05d},racer-{customer}" for i in range(coupons)
        ]
        made.append(
            create_job(
                org_id,
                series,
                lines,
                upload_headers='{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, '
                '"couponCode": 3, "billNumber": 4}',
            )
        )
    rig.worker("a")
    rig.worker("b")
    for job_id in made:
        rig.enqueue(job_id)
    ends = [wait_for_end(job_id) for job_id in made]
    # They really raced: each started before the other ended.
    assert max(e["started_at"] for e in ends) < min(e["finished_at"] for e in ends)
    assert sum(e["rows_succeeded"] for e in ends) == coupons
    assert all(e["rows_processed"] == coupons for e in ends)
    with transaction(org_id) as session:
        per_coupon = session.execute(
            text(
                "SELECT count(*) FROM redemptions WHERE org_id = :org "
                "GROUP BY coupon_id HAVING count(*) <> 1"
            ),
            {"org": org_id},
        ).all()
        codes = (
            session.execute(
                text("SELECT DISTINCT code FROM job_row_errors WHERE job_id = ANY(:jobs)"),
                {"jobs": made},
            )
            .scalars()
            .all()
        )
        counters = session.execute(
            text(
                "SELECT count(*), min(redemption_count), max(redemption_count) "
                "FROM coupon_counters WHERE org_id = :org"
            ),
            {"org": org_id},
        ).one()
    assert per_coupon == []
    assert set(codes) <= {711}
    assert tuple(counters) == (coupons, 1, 1)


def test_a_small_upload_starts_within_seconds_while_a_long_job_runs_on_one_worker(
    tmp_path: Path, org: tuple[int, str], database_url: str
) -> None:
    from core import keys

    rig = Rig(tmp_path, BULKREDEEM_SLICE_SECONDS="1", BULKREDEEM_CHUNK_ROWS="5000")
    try:
        big_org = org[0]
        big_series = create_series(big_org)
        big, bad = good_and_bad_file(big_org, big_series, 150_000, database_url)
        with admin_transaction() as session:
            other, _ = keys.create_org(session, f"small-{uuid.uuid4().hex[:8]}")
            small_org = other.id
        small_series = create_series(small_org)
        small = create_job(small_org, small_series, ["date,till,mobile,code", f"{SAMPLE_MS},T,1,X"])

        rig.worker("only")
        rig.enqueue(big)
        wait_until(lambda: job(big)["rows_processed"] > 0, 60, "the long job to start")
        rig.enqueue(small)
        queued_at = time.monotonic()
        wait_until(lambda: job(small)["status"] in TERMINAL, 30, "the small job to end")
        waited = time.monotonic() - queued_at
        assert job(big)["status"] == "RUNNING"  # the long job was not finished first
        assert waited < 10, waited
        wait_for_end(big)
        assert_exactly_once(big_org, big, 150_000, bad)
    finally:
        rig.close()
