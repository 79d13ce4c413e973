"""Reverting an import (DESIGN.md, Revert): the route's answers and refusals, what a revert
removes and keeps, and the same file applying again afterwards. Jobs run in this process
(core's run_slice); tests/test_revert_faults.py runs them in real workers and kills them."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import pipeline
from core.db import transaction
from core.errors import DomainError, ErrorKind
from core.reverts import request as revert_request
from core.reverts import run as revert_run
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_job, create_series, redeemable_file
from tests.helpers import MOBILE_HEADERS, job_id_of, upload


@pytest.fixture(autouse=True)
def quiet_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Doorbells rung onto a queue nobody serves: these tests run their jobs in this process
    (`run_to_end`), and a worker an earlier test of the session started must not take them
    first (it did, in the full suite: the job was RUNNING elsewhere, and this process could
    not claim it)."""
    monkeypatch.setattr(get_settings(), "queue_name", f"revert-quiet-{uuid.uuid4().hex[:8]}")


def run_to_end(job_id: int) -> dict[str, Any]:
    """Run the job in this process, slice after slice, until it ends; its row."""
    for _ in range(1000):
        if pipeline.run_slice(job_id, slice_seconds=60) is not pipeline.SliceResult.MORE:
            break
    return job_row(job_id)


def job_row(job_id: int) -> dict[str, Any]:
    with admin_transaction() as session:
        row = session.execute(text("SELECT * FROM upload_jobs WHERE id = :id"), {"id": job_id})
        return dict(row.one()._mapping)


def org_state(org_id: int) -> dict[str, Any]:
    """What a revert must leave consistent: redemptions, the archive and the counters."""
    with transaction(org_id) as session:
        row = session.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM redemptions WHERE org_id = :org) AS redemptions,
                  (SELECT count(*) FROM reverted_redemptions WHERE org_id = :org) AS archived,
                  (SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters
                   WHERE org_id = :org) AS counters,
                  (SELECT count(*) FROM coupon_counters c
                   LEFT JOIN (SELECT coupon_id, count(*) AS n FROM redemptions
                              GROUP BY coupon_id) r USING (coupon_id)
                   WHERE c.org_id = :org AND c.redemption_count <> coalesce(r.n, 0))
                      AS counters_off
                """
            ),
            {"org": org_id},
        ).one()
    return dict(row._mapping)


def redemptions_of(org_id: int, job_id: int, table: str = "redemptions") -> set[tuple[Any, ...]]:
    with transaction(org_id) as session:
        rows = session.execute(
            text(
                f"SELECT id, row_number, coupon_id, customer_id, redeemed_ms, till_id, bill_id,"
                f" bill_number, created_at FROM {table} WHERE job_id = :job"
            ),
            {"job": job_id},
        ).all()
    return {tuple(row) for row in rows}


@pytest.fixture
def an_import(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
) -> tuple[int, int, Path]:
    """An ended import of 300 good rows and 2 bad ones: (series, job, its file)."""
    org_id = org[0]
    series = create_series(org_id)
    base = 5_000_000_000 + org_id * 10_000
    path = redeemable_file(
        tmp_path / "import.csv",
        database_url,
        org_id,
        series,
        300,
        mobile_base=base,
        extra=[(SAMPLE_MS, "T1", base, "NO-SUCH"), (SAMPLE_MS, "T1", 1, "C00000001")],
    )
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    done = run_to_end(job)
    assert (done["status"], done["rows_succeeded"], done["rows_failed"]) == (
        "COMPLETED_WITH_ERRORS",
        300,
        2,
    )
    return series, job, path


def revert(client: TestClient, auth: dict[str, str], job_id: int, **headers: str) -> Any:
    return client.post(f"/v1/jobs/{job_id}/revert", headers={**auth, **headers})


def test_a_revert_is_a_job_that_removes_every_redemption_and_archives_it(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    org_id = org[0]
    series, job, _ = an_import
    applied = redemptions_of(org_id, job)
    assert len(applied) == 300
    before = org_state(org_id)
    assert (before["redemptions"], before["counters"], before["counters_off"]) == (300, 300, 0)

    answer = revert(client, auth, job)
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    revert_id = doc["jobId"]
    assert answer.headers["Location"] == f"/v1/jobs/{revert_id}"
    assert (doc["status"], doc["couponSeriesId"], doc["fileName"]) == (
        "QUEUED",
        series,
        "import.csv",
    )
    assert (doc["kind"], doc["revertsJobId"]) == ("REVERT", job)
    queued = job_row(revert_id)
    assert (queued["kind"], queued["reverts_job_id"], queued["storage_key"]) == ("REVERT", job, "")
    imported = job_row(job)
    assert queued["file_sha256"] == imported["file_sha256"]
    assert queued["file_size"] == imported["file_size"]
    assert queued["uploaded_by_key_id"] is not None

    done = run_to_end(revert_id)
    assert done["status"] == "COMPLETED"
    assert (done["rows_processed"], done["rows_succeeded"], done["rows_failed"]) == (300, 300, 0)
    after = org_state(org_id)
    assert after == {"redemptions": 0, "archived": 300, "counters": 0, "counters_off": 0}
    # Each redemption as it was, with the revert's id: nothing is lost.
    assert redemptions_of(org_id, job, "reverted_redemptions") == applied
    with transaction(org_id) as session:
        by = session.execute(
            text("SELECT DISTINCT reverted_by_job_id FROM reverted_redemptions WHERE job_id = :j"),
            {"j": job},
        ).scalars()
        assert list(by) == [revert_id]
    # The import keeps its status and its counts, and names its revert.
    imported_doc = client.get(f"/v1/jobs/{job}", headers=auth).json()
    assert (imported_doc["status"], imported_doc["revertedByJobId"]) == (
        "COMPLETED_WITH_ERRORS",
        revert_id,
    )
    assert job_row(job)["status"] == "COMPLETED_WITH_ERRORS"
    assert job_row(job)["rows_succeeded"] == 300
    shown = client.get(f"/v1/jobs/{revert_id}", headers=auth).json()
    assert shown["status"] == "COMPLETED"
    assert shown["progress"]["percent"] == 100.0
    assert shown["progress"]["rowsSucceeded"] == 300


def test_after_a_revert_the_same_file_applies_its_rows_again(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    series, job, path = an_import
    run_to_end(revert(client, auth, job).json()["jobId"])
    again = run_to_end(job_id_of(upload(client, auth, series, path, MOBILE_HEADERS)))
    # The same 300 rows apply again (no 790), the same two fail as before.
    assert (again["rows_succeeded"], again["rows_failed"]) == (300, 2)
    assert set(again["error_counts"]) == set(job_row(job)["error_counts"])
    state = org_state(org[0])
    assert state == {"redemptions": 300, "archived": 300, "counters": 300, "counters_off": 0}


def test_a_second_upload_before_the_revert_is_all_duplicates_and_after_it_applies(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    # The control for the test above: without the revert the same file redeems nothing.
    series, _, path = an_import
    twice = run_to_end(job_id_of(upload(client, auth, series, path, MOBILE_HEADERS)))
    assert twice["rows_succeeded"] == 0
    assert "790" in twice["error_counts"]


def test_the_same_idempotency_key_gives_the_same_revert_job(
    client: TestClient, auth: dict[str, str], an_import: Any
) -> None:
    _, job, _ = an_import
    first = revert(client, auth, job, **{"Idempotency-Key": "undo-1"})
    second = revert(client, auth, job, **{"Idempotency-Key": "undo-1"})
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["jobId"] == second.json()["jobId"]
    run_to_end(first.json()["jobId"])
    # Still the same job once it has ended, where a request without the key is a 409.
    third = revert(client, auth, job, **{"Idempotency-Key": "undo-1"})
    assert (third.status_code, third.json()["jobId"]) == (202, first.json()["jobId"])
    assert revert(client, auth, job).status_code == 409


def test_an_idempotency_key_used_for_another_request_is_a_409(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    series, job, path = an_import
    used = upload(client, auth, series, path, MOBILE_HEADERS, headers={"Idempotency-Key": "k-up"})
    job_id_of(used)  # the upload's answer, whatever its status code
    answer = revert(client, auth, job, **{"Idempotency-Key": "k-up"})
    assert answer.status_code == 409
    assert "Idempotency-Key" in answer.text


def test_a_job_already_reverted_or_being_reverted_is_a_409_naming_the_revert(
    client: TestClient, auth: dict[str, str], an_import: Any
) -> None:
    _, job, _ = an_import
    revert_id = revert(client, auth, job).json()["jobId"]
    while_queued = revert(client, auth, job)
    assert while_queued.status_code == 409
    body = while_queued.json()
    assert f"being reverted (QUEUED) by job {revert_id}" in body["status"]["message"]
    assert body["errors"] == [{"field": "revertedByJobId", "message": str(revert_id)}]
    run_to_end(revert_id)
    after = revert(client, auth, job)
    assert after.status_code == 409
    assert f"already reverted by job {revert_id}" in after.json()["status"]["message"]


def test_a_revert_itself_a_dry_run_and_a_job_not_ended_cannot_be_reverted(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    series, job, path = an_import
    revert_id = revert(client, auth, job).json()["jobId"]
    run_to_end(revert_id)
    of_revert = revert(client, auth, revert_id)
    assert of_revert.status_code == 409
    assert "itself a revert" in of_revert.json()["status"]["message"]

    dry = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS, extra={"dryRun": "true"}))
    run_to_end(dry)
    of_dry = revert(client, auth, dry)
    assert of_dry.status_code == 409
    assert "dry run" in of_dry.json()["status"]["message"]

    queued = create_job(org[0], series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,1,X"])
    of_queued = revert(client, auth, queued)
    assert of_queued.status_code == 409
    assert "has not ended (QUEUED)" in of_queued.json()["status"]["message"]
    # None of the refusals made a job.
    with admin_transaction() as session:
        kinds = session.execute(
            text("SELECT count(*) FROM upload_jobs WHERE org_id = :o AND kind = 'REVERT'"),
            {"o": org[0]},
        ).scalar_one()
    assert kinds == 1


def test_a_revert_cannot_be_cancelled(
    client: TestClient, auth: dict[str, str], an_import: Any
) -> None:
    _, job, _ = an_import
    revert_id = revert(client, auth, job).json()["jobId"]
    answer = client.post(f"/v1/jobs/{revert_id}/cancel", headers=auth)
    assert answer.status_code == 409
    assert "cannot be cancelled" in answer.json()["status"]["message"]
    assert job_row(revert_id)["cancel_requested"] is False
    assert run_to_end(revert_id)["status"] == "COMPLETED"


def test_a_failed_revert_leaves_room_for_another_which_removes_the_rest(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    # A revert lost beyond its retries ends FAILED with the chunks it committed: the partial
    # unique index lets a new one start, and it moves only what is left.
    _, job, _ = an_import
    first = revert(client, auth, job).json()["jobId"]
    with admin_transaction() as session:
        session.execute(
            text("UPDATE upload_jobs SET status = 'FAILED', finished_at = now() WHERE id = :id"),
            {"id": first},
        )
    second = revert(client, auth, job)
    assert second.status_code == 202
    assert run_to_end(second.json()["jobId"])["rows_succeeded"] == 300
    assert org_state(org[0])["archived"] == 300


def test_racing_revert_requests_make_one_revert_and_the_loser_names_it(
    org: tuple[int, str], an_import: Any, database_url: str
) -> None:
    # The unique index decides: the second request's insert waits for the first's commit,
    # then fails, and is answered with the revert that won.
    org_id = org[0]
    _, job, _ = an_import
    inserted, release = threading.Event(), threading.Event()
    made: list[int] = []

    def first() -> None:
        with transaction(org_id) as session:
            made.append(
                revert_request.request_revert(
                    session, org_id, job, idempotency_key=None, key_id=None
                )[0].id
            )
            inserted.set()
            release.wait(30)

    winner = threading.Thread(target=first)
    winner.start()
    assert inserted.wait(30)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            with transaction(org_id) as session:
                revert_request.request_revert(
                    session, org_id, job, idempotency_key=None, key_id=None
                )
        except BaseException as exc:
            outcome.append(exc)

    loser = threading.Thread(target=second)
    loser.start()
    deadline = time.monotonic() + 30
    while not _waiting_on_a_lock(database_url):
        assert time.monotonic() < deadline, "the second insert never waited"
        time.sleep(0.02)
    release.set()
    winner.join(30)
    loser.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], DomainError), outcome
    assert outcome[0].kind is ErrorKind.CONFLICT
    assert f"by job {made[0]}" in outcome[0].message


def _waiting_on_a_lock(database_url: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query ILIKE '%%INSERT INTO upload_jobs%%'"
        ).fetchone()
    return row is not None


def test_another_orgs_job_is_a_404(
    client: TestClient, auth: dict[str, str], an_import: Any
) -> None:
    from tests.test_jobs_api import other_org

    _, job, _ = an_import
    _, stranger = other_org()
    answer = revert(client, stranger, job)
    assert answer.status_code == 404


def test_only_the_lease_holder_at_the_checkpoint_moves_a_chunk(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], an_import: Any
) -> None:
    # The fence of every chunk: another token, or a checkpoint that moved on since this worker
    # read it (a chunk committed by someone else), moves nothing and says so.
    import dataclasses

    from core.apply import LeaseLost
    from core.db import set_org
    from core.jobs import lease

    org_id = org[0]
    _, job, _ = an_import
    revert_id = revert(client, auth, job).json()["jobId"]
    with transaction(org_id) as session:
        set_org(session, org_id)
        claimed = lease.claim(session, revert_id, "holder")
    assert claimed is not None
    with pytest.raises(LeaseLost):
        revert_run.run_revert(claimed, "not-the-holder", time.monotonic() + 60)
    assert org_state(org_id)["archived"] == 0
    stale = dataclasses.replace(claimed, next_record=claimed.next_record + 1)
    with pytest.raises(LeaseLost):
        revert_run.run_revert(stale, "holder", time.monotonic() + 60)
    assert org_state(org_id)["archived"] == 0
    assert revert_run.run_revert(claimed, "holder", time.monotonic() + 60) is False
    assert org_state(org_id)["archived"] == 300
    assert job_row(revert_id)["status"] == "COMPLETED"


def test_a_revert_gives_customers_their_series_limit_back(
    org: tuple[int, str], tmp_path: Path
) -> None:
    # Per-customer counts are counted from redemptions: once the first import is reverted,
    # the row its customer's limit refused before applies.
    from tests.factories import create_coupon, create_customer

    org_id = org[0]
    series = create_series(org_id, any_user=True, max_redemptions_per_customer=1)
    create_customer(org_id, mobile="9111111111")
    for code in ("LIM1", "LIM2"):
        create_coupon(org_id, series, code)
    first = create_job(org_id, series, ["d,t,m,c", f"{SAMPLE_MS},T1,9111111111,LIM1"])
    assert run_to_end(first)["rows_succeeded"] == 1
    second = ["d,t,m,c", f"{SAMPLE_MS + 1},T1,9111111111,LIM2"]
    refused = run_to_end(create_job(org_id, series, second))
    assert refused["error_counts"] == {"736": 1}

    with transaction(org_id) as session:
        undo = revert_request.request_revert(
            session, org_id, first, idempotency_key=None, key_id=None
        )
    assert run_to_end(undo[0].id)["rows_succeeded"] == 1
    assert run_to_end(create_job(org_id, series, second))["rows_succeeded"] == 1
    assert org_state(org_id)["counters_off"] == 0
