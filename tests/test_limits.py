"""Per-org limits: request rates shared through Redis, and a cap on jobs running at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.settings import get_settings
from tests.factories import SAMPLE_MS, bulk_customers_and_coupons, create_job, create_series
from tests.helpers import MOBILE_HEADERS, refusal
from tests.test_faults import TERMINAL, Rig, job

GOOD = f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,ABC\n".encode()


def post_upload(client: TestClient, auth: dict[str, str], series: int) -> object:
    return client.post(
        f"/coupon/api/v1/upload/redeemFile/{series}",
        headers=auth,
        data={
            "customerIdentifier": "MOBILE",
            "couponIdentifier": "COUPON_CODE",
            "uploadHeaders": json.dumps(MOBILE_HEADERS),
        },
        files={"file": ("r.csv", GOOD, "text/csv")},
    )


def test_uploads_over_the_orgs_rate_get_429_with_retry_after(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "uploads_per_minute", 2)
    series = create_series(org[0])
    answers = [post_upload(client, auth, series) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]  # type: ignore[attr-defined]
    refused = answers[2]
    retry = int(refused.headers["Retry-After"])  # type: ignore[attr-defined]
    assert 1 <= retry <= 60
    status, message, _ = refusal(refused)  # redeemFile's: Capillary's shape
    assert status == 429
    assert "at most 2 a minute" in message
    # Polling has its own budget: still fine.
    assert client.get("/v1/jobs", headers=auth).status_code == 200


def test_polling_over_the_orgs_rate_gets_429_and_other_orgs_are_not_affected(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core import keys
    from tests.dbtools import admin_transaction

    monkeypatch.setattr(get_settings(), "requests_per_minute", 5)
    codes = [client.get("/v1/jobs", headers=auth).status_code for _ in range(6)]
    # The window is a calendar minute: a boundary crossed mid-loop resets the count.
    assert codes[:5] == [200] * 5 and codes[5] in (429, 200)
    if codes[5] == 200:
        codes = [client.get("/v1/jobs", headers=auth).status_code for _ in range(6)]
        assert 429 in codes
    with admin_transaction() as session:
        _, other_key = keys.create_org(session, f"other-{time.monotonic_ns()}")
    other = {"Authorization": f"Bearer {other_key.key}"}
    assert client.get("/v1/jobs", headers=other).status_code == 200


def test_an_orgs_jobs_beyond_its_cap_wait_queued_and_start_in_order(
    tmp_path: Path, org: tuple[int, str], database_url: str
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    base = 1_000_000_000 + org_id * 100_000
    per_job = 8_000
    bulk_customers_and_coupons(database_url, org_id, series, per_job * 3, mobile_base=base)
    made = [
        create_job(
            org_id,
            series,
            ["date,till,mobile,code"]
            + [
                f"{SAMPLE_MS + i},T1,{base + i},C{i:08d}"
                for i in range(n * per_job, (n + 1) * per_job)
            ],
        )
        for n in range(3)
    ]
    rig = Rig(tmp_path, BULKREDEEM_MAX_RUNNING_JOBS_PER_ORG="1", BULKREDEEM_CHUNK_ROWS="1000")
    try:
        rig.worker("a")
        rig.worker("b")
        for job_id in reversed(made):  # the newest is announced first: order must still hold
            rig.enqueue(job_id)
        most_running = 0
        deadline = time.monotonic() + 120
        while not all(job(j)["status"] in TERMINAL for j in made):
            running = sum(job(j)["status"] == "RUNNING" for j in made)
            most_running = max(most_running, running)
            assert time.monotonic() < deadline, [job(j)["status"] for j in made]
            time.sleep(0.02)
        ends = [job(j) for j in made]
        assert most_running == 1
        assert [e["status"] for e in ends] == ["COMPLETED"] * 3
        starts = [e["started_at"] for e in ends]
        assert starts == sorted(starts)  # oldest first
        assert all(ends[i]["finished_at"] <= ends[i + 1]["started_at"] for i in range(2))
    finally:
        rig.close()


def test_the_request_rate_is_still_read_under_its_first_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.settings import Settings

    monkeypatch.delenv("BULKREDEEM_REQUESTS_PER_MINUTE", raising=False)
    monkeypatch.setenv("BULKREDEEM_POLLS_PER_MINUTE", "7")
    assert Settings().requests_per_minute == 7
    monkeypatch.setenv("BULKREDEEM_REQUESTS_PER_MINUTE", "9")  # the new name wins
    assert Settings().requests_per_minute == 9
