"""A revert under faults, in real worker processes: killed mid-chunk (once, twice), its message
delivered twice, Redis flushed, and an import racing it on the same single-use coupons. Each
test checks that every redemption was removed exactly once, that the archive holds exactly
what was removed, and that each coupon's counter equals its redemptions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from core import pipeline
from core.db import transaction
from core.reverts import request as revert_request
from tests import processes
from tests.factories import SAMPLE_MS, create_customer, create_job, create_series
from tests.test_faults import Rig, good_and_bad_file, job, wait_for_end, wait_until

ROWS = 12_000
# Small chunks: a revert's chunk of this job takes milliseconds, and the tests stop one half-way.
CHUNK = "500"


@pytest.fixture
def rig(tmp_path: Path, database_url: str) -> Iterator[Rig]:
    made = Rig(tmp_path, BULKREDEEM_CHUNK_ROWS=CHUNK)
    yield made
    made.close()


def ended_import(org_id: int, database_url: str, rows: int = ROWS) -> tuple[int, int, int]:
    """An import run to its end in this process: (series, job, rows it applied)."""
    series = create_series(org_id)
    job_id, bad = good_and_bad_file(org_id, series, rows, database_url)
    while pipeline.run_slice(job_id, slice_seconds=60) is pipeline.SliceResult.MORE:
        pass
    assert job(job_id)["rows_succeeded"] == rows - bad
    return series, job_id, rows - bad


def new_revert(org_id: int, import_id: int) -> int:
    with transaction(org_id) as session:
        made, created = revert_request.request_revert(
            session, org_id, import_id, idempotency_key=None, key_id=None
        )
        assert created
        return made.id


def applied(org_id: int, job_id: int, table: str = "redemptions") -> set[tuple[Any, ...]]:
    with transaction(org_id) as session:
        rows = session.execute(
            text(f"SELECT id, row_number, coupon_id, customer_id FROM {table} WHERE job_id = :j"),
            {"j": job_id},
        ).all()
    return {tuple(row) for row in rows}


def assert_reverted_exactly_once(
    org_id: int, import_id: int, revert_id: int, before: set[tuple[Any, ...]]
) -> None:
    done = job(revert_id)
    assert done["status"] == "COMPLETED", done
    removed = len(before)
    assert (done["rows_processed"], done["rows_succeeded"], done["rows_failed"]) == (
        removed,
        removed,
        0,
    )
    assert applied(org_id, import_id) == set()
    # The archive holds each removed redemption once, as it was, and nothing else.
    assert applied(org_id, import_id, "reverted_redemptions") == before
    with transaction(org_id) as session:
        archive = session.execute(
            text(
                "SELECT count(*), count(DISTINCT id), count(*) FILTER"
                " (WHERE reverted_by_job_id <> :r) FROM reverted_redemptions WHERE job_id = :j"
            ),
            {"j": import_id, "r": revert_id},
        ).one()
    assert tuple(archive) == (removed, removed, 0)
    assert counters_off(org_id) == 0


def counters_off(org_id: int) -> int:
    """The org's coupons whose counter is not the number of their redemptions."""
    with transaction(org_id) as session:
        return int(
            session.execute(
                text(
                    """
                    SELECT count(*) FROM coupon_counters c
                    FULL JOIN (SELECT coupon_id, count(*) AS n FROM redemptions
                               WHERE org_id = :org GROUP BY coupon_id) r USING (coupon_id)
                    WHERE coalesce(c.org_id, :org) = :org
                      AND coalesce(c.redemption_count, 0) <> coalesce(r.n, 0)
                    """
                ),
                {"org": org_id},
            ).scalar_one()
        )


class SeriesHeld:
    """The series' row locked by the test, so that a revert's chunk (which has its job row
    locked by then) waits inside its transaction: a worker killed then dies mid-chunk."""

    def __init__(self, database_url: str, series: int) -> None:
        self.conn = psycopg.connect(database_url)
        self.conn.execute("SELECT 1 FROM coupon_series WHERE id = %s FOR UPDATE", (series,))

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def chunk_waiting(database_url: str) -> bool:
    """Whether a revert's chunk waits for the series lock, its job row locked."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query ILIKE '%%FROM coupon_series%%FOR NO KEY UPDATE%%'"
        ).fetchone()
    return row is not None


def kill_mid_chunk(
    worker: processes.Process, database_url: str, series: int, revert_id: int, after: int
) -> int:
    """Once the revert has removed `after` rows, stop its next chunk half-way and SIGKILL
    the worker there; then let the dead worker's chunk go. The rows removed by then."""
    wait_until(lambda: job(revert_id)["rows_processed"] >= after, 60, f"{after} rows reverted")
    held = SeriesHeld(database_url, series)
    try:
        wait_until(lambda: chunk_waiting(database_url), 30, "a chunk waiting on the series")
        worker.kill()
        stopped = job(revert_id)
    finally:
        held.release()
    assert stopped["status"] == "RUNNING"
    assert 0 < stopped["rows_processed"] < ROWS
    return int(stopped["rows_processed"])


def test_a_revert_killed_mid_chunk_resumes_and_removes_each_redemption_once(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series, import_id, _ = ended_import(org_id, database_url)
    before = applied(org_id, import_id)
    revert_id = new_revert(org_id, import_id)
    first = rig.worker("first")
    rig.enqueue(revert_id)
    stopped = kill_mid_chunk(first, database_url, series, revert_id, 1_000)
    # What the killed chunk did was never committed: the checkpoint is where it was.
    time.sleep(0.5)
    assert job(revert_id)["rows_processed"] == stopped
    rig.beat()  # the sweeper hands the job on once the dead worker's lease lapses
    rig.worker("second")
    wait_for_end(revert_id)
    assert_reverted_exactly_once(org_id, import_id, revert_id, before)
    assert job(revert_id)["attempts"] == 2


def test_a_revert_killed_twice_still_removes_each_redemption_once(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series, import_id, _ = ended_import(org_id, database_url)
    before = applied(org_id, import_id)
    revert_id = new_revert(org_id, import_id)
    rig.beat()
    first = rig.worker("first")
    rig.enqueue(revert_id)
    once = kill_mid_chunk(first, database_url, series, revert_id, 1_000)
    second = rig.worker("second")
    kill_mid_chunk(second, database_url, series, revert_id, once + 1_000)
    rig.worker("third")
    wait_for_end(revert_id)
    assert_reverted_exactly_once(org_id, import_id, revert_id, before)
    assert job(revert_id)["attempts"] == 3


def test_a_revert_delivered_twice_at_once_removes_once(
    rig: Rig, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    _, import_id, _ = ended_import(org_id, database_url)
    before = applied(org_id, import_id)
    revert_id = new_revert(org_id, import_id)
    one, two = rig.worker("one"), rig.worker("two")
    rig.enqueue(revert_id)
    rig.enqueue(revert_id)
    wait_for_end(revert_id)
    assert_reverted_exactly_once(org_id, import_id, revert_id, before)
    wait_until(
        lambda: "not_claimed" in one.text() + two.text(), 30, "the second delivery to give up"
    )
    assert job(revert_id)["attempts"] == 1


def test_redis_flushed_mid_revert_loses_no_revert(
    tmp_path: Path, org: tuple[int, str], database_url: str
) -> None:
    server = processes.RedisServer(tmp_path)
    server.start()
    # Short slices: the revert is handed on (a new message) every few chunks.
    rig = Rig(
        tmp_path, redis_url=server.url, BULKREDEEM_CHUNK_ROWS="200", BULKREDEEM_SLICE_SECONDS="0.1"
    )
    try:
        org_id = org[0]
        series, import_id, _ = ended_import(org_id, database_url)
        before = applied(org_id, import_id)
        revert_id = new_revert(org_id, import_id)
        first = rig.worker("first")
        rig.enqueue(revert_id)
        wait_until(lambda: job(revert_id)["rows_processed"] >= 1_000, 60, "the revert to run")
        # Its worker is asked to stop while a chunk waits: it finishes that chunk, hands the
        # revert on (a new message in Redis) and exits; nobody takes the message.
        held = SeriesHeld(database_url, series)
        try:
            wait_until(lambda: chunk_waiting(database_url), 30, "a chunk waiting on the series")
            first.popen.terminate()
            time.sleep(0.5)  # the signal taken before the chunk can go on
        finally:
            held.release()
        first.popen.wait(timeout=30)
        handed_on = job(revert_id)
        assert (handed_on["status"], handed_on["lease_owner"]) == ("RUNNING", None)
        assert 0 < handed_on["rows_processed"] < len(before)
        assert server.client().llen(rig.queue) == 1
        server.client().flushall()  # the message is gone: only Postgres knows of the revert
        server.stop()
        time.sleep(1)
        server.start()
        rig.beat()
        rig.worker("second")
        wait_for_end(revert_id)
        assert_reverted_exactly_once(org_id, import_id, revert_id, before)
    finally:
        rig.close()
        server.stop()


def test_a_revert_racing_an_import_on_the_same_single_use_coupons_breaks_no_limit(
    rig: Rig, org: tuple[int, str]
) -> None:
    """Import A redeemed every coupon once; import B, by another customer, redeems the same
    coupons while A's revert runs. The invariant, whatever the interleaving: every one of A's
    redemptions is archived by the revert exactly once; each coupon has at most one
    redemption (B's, when B's chunk came after the revert's chunk of that coupon), whose
    counter says so; B's rows are each applied or refused with 711 (the coupon's limit), and
    the coupons it was refused are exactly those left with no redemption."""
    org_id = org[0]
    series = create_series(org_id, any_user=True, max_redemptions_per_coupon=1)
    coupons = 8_000
    with transaction(org_id) as session:
        session.execute(
            text(
                "INSERT INTO coupons (org_id, series_id, code) "
                "SELECT :org, :series, 'R' || lpad(i::text, 5, '0') FROM generate_series(0, :n) i"
            ),
            {"org": org_id, "series": series, "n": coupons - 1},
        )
    made = []
    for n in (1, 2):
        mobile = f"78{org_id:06d}{n}"
        create_customer(org_id, mobile=mobile)
        # B takes the coupons in the opposite order: its first chunks meet coupons whose
        # redemptions the revert reaches last, its last chunks coupons reverted already.
        order = range(coupons) if n == 1 else range(coupons - 1, -1, -1)
        lines = ["date,till,mobile,code,bill"] + [
            f"{SAMPLE_MS + i},T1,{mobile},R{i:05d},racer-{n}" for i in order
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
    a, b = made
    while pipeline.run_slice(a, slice_seconds=60) is pipeline.SliceResult.MORE:
        pass
    assert job(a)["rows_succeeded"] == coupons
    before = applied(org_id, a)
    revert_id = new_revert(org_id, a)
    rig.worker("one")
    rig.worker("two")
    rig.enqueue(b)
    rig.enqueue(revert_id)
    wait_for_end(revert_id)
    b_done = wait_for_end(b)

    assert_reverted_exactly_once(org_id, a, revert_id, before)
    assert b_done["rows_processed"] == coupons
    with transaction(org_id) as session:
        state = session.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM (SELECT coupon_id FROM redemptions WHERE org_id = :org
                     GROUP BY coupon_id HAVING count(*) > 1) x) AS over_limit,
                  (SELECT count(*) FROM redemptions WHERE org_id = :org) AS live,
                  (SELECT count(*) FROM redemptions WHERE org_id = :org AND job_id <> :b)
                      AS not_b,
                  (SELECT array_agg(DISTINCT code) FROM job_row_errors WHERE job_id = :b)
                      AS codes,
                  (SELECT count(*) FROM job_row_errors e JOIN coupons k
                     ON k.series_id = :series AND k.code = e.cells[4]
                   WHERE e.job_id = :b) AS refused,
                  (SELECT count(*) FROM job_row_errors e JOIN coupons k
                     ON k.series_id = :series AND k.code = e.cells[4]
                   WHERE e.job_id = :b AND EXISTS (
                     SELECT 1 FROM redemptions r WHERE r.coupon_id = k.id)) AS refused_but_held
                """
            ),
            {"org": org_id, "b": b, "series": series},
        ).one()
    reverted = job(revert_id)
    # They really raced: each started before the other ended, and B met both kinds of coupon.
    assert max(reverted["started_at"], b_done["started_at"]) < min(
        reverted["finished_at"], b_done["finished_at"]
    )
    assert 0 < b_done["rows_failed"] < coupons
    assert state.over_limit == 0
    assert state.refused == b_done["rows_failed"]
    assert state.not_b == 0
    assert state.live == b_done["rows_succeeded"]
    assert b_done["rows_failed"] == coupons - state.live
    assert set(state.codes or []) <= {711}
    assert state.refused_but_held == 0
    assert counters_off(org_id) == 0
