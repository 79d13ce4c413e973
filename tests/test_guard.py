"""maxErrorRate: a wrong upload stops before it applies anything, or at the chunk that shows it.

A real worker process of the module's own, on a queue of its own, with chunks of 10 rows, so
that a 50-row file has chunk boundaries to stop at; the API (in process) rings that queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import pipeline
from core.settings import get_settings
from tests import processes
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, bulk_customers_and_coupons, create_job, create_series
from tests.helpers import job_id_of, upload, wait_for_job

CHUNK = 10
HEADERS = {"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}
# The mistake the guard is for: mobile and coupon code swapped.
SWAPPED = {"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 3, "couponCode": 2}


@pytest.fixture(scope="module")
def guard_queue(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    queue = f"guard-{uuid.uuid4().hex[:8]}"
    env = processes.service_env(BULKREDEEM_CHUNK_ROWS=str(CHUNK), BULKREDEEM_QUEUE_NAME=queue)
    log = tmp_path_factory.mktemp("guard") / "worker.log"
    child = processes.worker(env, queue, log)
    yield queue
    child.stop()


@pytest.fixture
def rung(guard_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads made through the API ring the module's worker."""
    monkeypatch.setattr(get_settings(), "queue_name", guard_queue)


class Coupons:
    """A series with `count` customers, each with one coupon of their own (C00000000, ...)."""

    def __init__(self, database_url: str, org_id: int, count: int) -> None:
        self.org_id = org_id
        self.series = create_series(org_id)
        self.base = 7_300_000_000 + org_id * 1000
        bulk_customers_and_coupons(database_url, org_id, self.series, count, mobile_base=self.base)

    def row(self, i: int, code: str | None = None) -> str:
        return f"{SAMPLE_MS + i},T1,{self.base + i},{code or f'C{i:08d}'}"

    def file(self, path: Path, rows: list[str]) -> Path:
        path.write_text("\n".join(["date,till,mobile,code", *rows]) + "\n")
        return path


def applied(org_id: int) -> tuple[int, int]:
    """The org's redemptions and the sum of its coupon counters."""
    with admin_transaction() as session:
        row = session.execute(
            text(
                """
                SELECT (SELECT count(*) FROM redemptions WHERE org_id = :o),
                    (SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters
                     WHERE org_id = :o)
                """
            ),
            {"o": org_id},
        ).one()
    return int(row[0]), int(row[1])


def stored(job_id: int) -> dict[str, Any]:
    with admin_transaction() as session:
        row = session.execute(text("SELECT * FROM upload_jobs WHERE id = :id"), {"id": job_id})
        return dict(row.one()._mapping)


def set_default(org_id: int, rate: float | None) -> None:
    with admin_transaction() as session:
        session.execute(
            text("UPDATE orgs SET default_max_error_rate = :r WHERE id = :o"),
            {"r": rate, "o": org_id},
        )


@pytest.mark.usefixtures("rung")
def test_swapped_columns_fail_after_the_first_chunk_with_nothing_applied(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    world = Coupons(database_url, org[0], 30)
    path = world.file(tmp_path / "swapped.csv", [world.row(i) for i in range(30)])

    job_id = job_id_of(
        upload(client, auth, world.series, path, SWAPPED, extra={"maxErrorRate": "5%"})
    )
    doc = wait_for_job(client, auth, job_id)

    assert doc["status"] == "FAILED"
    assert applied(org[0]) == (0, 0)
    # Not even the first chunk's row errors or progress: the job shows what it applied, none.
    assert doc["progress"]["rowsProcessed"] == 0
    assert doc["progress"]["rowsSucceeded"] == 0
    assert client.get(f"/v1/jobs/{job_id}/errors", headers=auth).json()["items"] == []
    assert stored(job_id)["max_error_rate"] == 0.05
    reason = doc["failureReason"]
    assert reason.startswith("stopped by maxErrorRate 5% before anything was applied")
    assert f"10 of the first {CHUNK} rows failed (100%)" in reason
    assert "805 INVALID_IDENTIFIER x10" in reason
    assert "First: row 2: 805" in reason
    assert "Check uploadHeaders: two columns swapped" in reason


@pytest.mark.usefixtures("rung")
def test_errors_that_come_late_stop_the_job_at_the_boundary_that_shows_them(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    world = Coupons(database_url, org[0], 50)
    # Rows 2-31 apply; rows 32-51 name coupons the series lacks (702).
    rows = [world.row(i) for i in range(30)] + [world.row(i, f"NOPE{i}") for i in range(30, 50)]
    path = world.file(tmp_path / "late.csv", rows)

    job_id = job_id_of(
        upload(client, auth, world.series, path, HEADERS, extra={"maxErrorRate": "0.2"})
    )
    doc = wait_for_job(client, auth, job_id)

    # After chunk 4 (rows 32-41): 10 failed of 40, 25%, above 20%. Chunk 5 never ran.
    assert doc["status"] == "FAILED"
    assert doc["progress"]["rowsProcessed"] == 40
    assert doc["progress"]["rowsSucceeded"] == 30
    assert doc["progress"]["rowsFailed"] == 10
    assert applied(org[0]) == (30, 30)
    reason = doc["failureReason"]
    assert reason.startswith("stopped by maxErrorRate 20% after row 41: 10 of 40 rows failed")
    assert "(25%)" in reason
    assert "702 COUPON_NOT_FOUND x10" in reason
    assert "The 30 rows applied so far" in reason
    assert f"POST /v1/jobs/{job_id}/revert undoes them" in reason


@pytest.mark.usefixtures("rung")
def test_a_share_at_the_rate_is_not_above_it_and_the_job_completes(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    world = Coupons(database_url, org[0], 20)
    # One bad row in each chunk of 10: 10% of each chunk and of the whole, never above it.
    rows = [world.row(i, "NOPE" if i in (4, 14) else None) for i in range(20)]
    path = world.file(tmp_path / "fine.csv", rows)

    job_id = job_id_of(
        upload(client, auth, world.series, path, HEADERS, extra={"maxErrorRate": "10%"})
    )
    doc = wait_for_job(client, auth, job_id)

    assert doc["status"] == "COMPLETED_WITH_ERRORS", doc["failureReason"]
    assert doc["failureReason"] is None
    assert applied(org[0]) == (18, 18)


@pytest.mark.usefixtures("rung")
def test_the_org_default_guards_an_upload_that_names_no_rate(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    set_default(org[0], 0.05)
    world = Coupons(database_url, org[0], 12)
    path = world.file(tmp_path / "swapped.csv", [world.row(i) for i in range(12)])

    job_id = job_id_of(upload(client, auth, world.series, path, SWAPPED))
    doc = wait_for_job(client, auth, job_id)

    assert stored(job_id)["max_error_rate"] == 0.05
    assert doc["maxErrorRate"] == 0.05  # the document shows the rate the job ran with
    assert doc["status"] == "FAILED"
    assert "before anything was applied" in doc["failureReason"]
    assert applied(org[0]) == (0, 0)


@pytest.mark.usefixtures("rung")
def test_the_upload_s_rate_overrides_the_org_default(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    set_default(org[0], 0.05)
    world = Coupons(database_url, org[0], 12)
    # Two bad rows of 12: 20% of the first chunk, above the org's 5%, under the upload's 50%.
    rows = [world.row(i, "NOPE" if i < 2 else None) for i in range(12)]
    path = world.file(tmp_path / "some-bad.csv", rows)

    job_id = job_id_of(
        upload(client, auth, world.series, path, HEADERS, extra={"maxErrorRate": "0.5"})
    )
    doc = wait_for_job(client, auth, job_id)

    assert stored(job_id)["max_error_rate"] == 0.5
    assert doc["status"] == "COMPLETED_WITH_ERRORS", doc["failureReason"]
    assert applied(org[0]) == (10, 10)


@pytest.mark.usefixtures("rung")
def test_a_dry_run_is_stopped_by_its_guard_as_the_real_run_would_be(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    world = Coupons(database_url, org[0], 12)
    path = world.file(tmp_path / "swapped.csv", [world.row(i) for i in range(12)])

    extra = {"maxErrorRate": "0.1", "dryRun": "true"}
    job_id = job_id_of(upload(client, auth, world.series, path, SWAPPED, extra=extra))
    doc = wait_for_job(client, auth, job_id)

    assert doc["status"] == "FAILED"
    assert "before anything was applied" in doc["failureReason"]
    with admin_transaction() as session:
        left = session.execute(
            text("SELECT count(*) FROM dry_run_redemptions WHERE job_id = :j"), {"j": job_id}
        ).scalar_one()
    assert left == 0
    assert applied(org[0]) == (0, 0)


@pytest.mark.usefixtures("rung")
def test_without_a_rate_a_wrong_mapping_runs_to_the_end(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    world = Coupons(database_url, org[0], 12)
    path = world.file(tmp_path / "swapped.csv", [world.row(i) for i in range(12)])

    job_id = job_id_of(upload(client, auth, world.series, path, SWAPPED))
    doc = wait_for_job(client, auth, job_id)

    assert stored(job_id)["max_error_rate"] is None
    assert doc["status"] == "COMPLETED_WITH_ERRORS"
    assert doc["progress"]["rowsFailed"] == 12


def test_a_slice_that_resumes_past_a_tripping_chunk_stops_at_once(
    org: tuple[int, str], database_url: str
) -> None:
    """The worker died between the chunk that tripped the guard and ending the job: the next
    slice ends it before reading on, as that chunk's slice would have."""
    series = create_series(org[0])
    lines = ["date,till,mobile,code", *(f"{SAMPLE_MS},T1,7000000001,X{i}" for i in range(30))]
    job_id = create_job(org[0], series, lines)
    with admin_transaction() as session:
        session.execute(
            text(
                """
                UPDATE upload_jobs SET max_error_rate = 0.1, rows_processed = 20,
                    rows_succeeded = 15, rows_failed = 5, error_counts = '{"702": 5}',
                    next_record = 22, status = 'RUNNING'
                WHERE id = :id
                """
            ),
            {"id": job_id},
        )

    assert pipeline.run_slice(job_id) == pipeline.SliceResult.DONE

    job = stored(job_id)
    assert job["status"] == "FAILED"
    assert job["rows_processed"] == 20  # nothing more was read
    assert job["failure_reason"].startswith("stopped by maxErrorRate 10% after row 21: 5 of 20")
    assert "The 15 rows applied so far" in job["failure_reason"]


@pytest.mark.parametrize("value", ["5", "abc", "-0.1", "1.5", "101%", "nan", "inf", "%"])
def test_a_rate_that_is_not_a_share_or_a_percentage_is_refused(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path, value: str
) -> None:
    series = create_series(org[0])
    path = tmp_path / "one.csv"
    path.write_text(f"date,till,mobile,code\n{SAMPLE_MS},T1,7000000001,X\n")

    response = upload(client, auth, series, path, HEADERS, extra={"maxErrorRate": value})

    assert response.status_code == 400, response.text
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["maxErrorRate"]
    assert "a share from 0 to 1 (0.05) or a percentage" in body["errors"][0]["message"]


@pytest.mark.parametrize(("value", "rate"), [("5%", 0.05), ("0.05", 0.05), ("0", 0.0), ("1", 1.0)])
def test_a_rate_is_stored_as_the_share_it_says(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    value: str,
    rate: float,
) -> None:
    series = create_series(org[0])
    path = tmp_path / "one.csv"
    path.write_text(f"date,till,mobile,code\n{SAMPLE_MS},T1,7000000001,X\n")

    job_id = job_id_of(upload(client, auth, series, path, HEADERS, extra={"maxErrorRate": value}))

    assert stored(job_id)["max_error_rate"] == rate


def test_the_same_key_with_the_same_rate_is_the_same_job_and_another_rate_a_conflict(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    path = tmp_path / "one.csv"
    path.write_text(f"date,till,mobile,code\n{SAMPLE_MS},T1,7000000001,X\n")
    key = {"Idempotency-Key": uuid.uuid4().hex}

    def send(rate: str) -> Any:
        extra = {"maxErrorRate": rate}
        return upload(client, auth, series, path, HEADERS, extra=extra, headers=key)

    first = job_id_of(send("5%"))
    assert job_id_of(send("0.05")) == first  # the same rate, written another way
    assert send("10%").status_code == 409


def test_post_v1_jobs_takes_the_same_field_and_shows_it_in_the_job(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    """The service's own upload route judges the form as redeemFile does (one form judge)."""
    series = create_series(org[0])
    path = tmp_path / "one.csv"
    path.write_text(f"date,till,mobile,code\n{SAMPLE_MS},T1,7000000001,X\n")
    form = {
        "customerIdentifier": "MOBILE",
        "couponIdentifier": "COUPON_CODE",
        "uploadHeaders": json.dumps(HEADERS),
    }

    def post(rate: str) -> Any:
        return client.post(
            "/v1/jobs",
            params={"couponSeriesId": series},
            headers=auth,
            data={**form, "maxErrorRate": rate},
            files={"file": (path.name, path.read_bytes(), "text/csv")},
        )

    made = post("12.5%")
    refused = post("12.5")

    assert made.status_code == 202, made.text
    assert made.json()["maxErrorRate"] == 0.125
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json()["errors"]] == ["maxErrorRate"]
