"""The job API: listing, paging, Capillary's status list, cancel, and other orgs' jobs."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import keys, uploads
from core.db import transaction
from core.storage import get_storage
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, job_id_of, upload


def queued_job(org_id: int, series_id: int) -> int:
    """A job made in core and never enqueued, so it stays QUEUED."""
    sink = uploads.FileSink(get_storage(), org_id)
    sink.write(f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,A\n".encode())
    form = uploads.UploadForm(
        fields={
            "customerIdentifier": "MOBILE",
            "couponIdentifier": "COUPON_CODE",
            "uploadHeaders": '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, '
            '"couponCode": 3}',
        },
        file_name="q.csv",
    )
    sink.commit()
    plan = uploads.judge(form, sink)
    with transaction(org_id) as session:
        job = uploads.create_job(
            session,
            org_id=org_id,
            series_id=series_id,
            plan=plan,
            sink=sink,
            file_name="q.csv",
            idempotency_key=None,
            request_fingerprint=None,
        )
        return job.id


def other_org() -> tuple[int, dict[str, str]]:
    with admin_transaction() as session:
        org, issued = keys.create_org(session, f"other-{uuid.uuid4().hex[:10]}")
        return org.id, {"Authorization": f"Bearer {issued.key}"}


def test_cancelling_a_queued_job_ends_it_at_once(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    job = queued_job(org[0], series)
    answer = client.post(f"/v1/jobs/{job}/cancel", headers=auth)
    assert answer.status_code == 200
    assert answer.json()["status"] == "CANCELLED"
    assert client.get(f"/v1/jobs/{job}", headers=auth).json()["finishedAt"] is not None


def test_job_document_has_every_field_of_the_contract(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    doc = client.get(f"/v1/jobs/{queued_job(org[0], series)}", headers=auth).json()
    for name in (
        "jobId",
        "couponSeriesId",
        "status",
        "fileName",
        "fileSize",
        "details",
        "createdAt",
        "startedAt",
        "finishedAt",
        "progress",
        "errorSummary",
        "failureReason",
        "links",
    ):
        assert name in doc
    assert set(doc["progress"]) == {
        "bytesProcessed",
        "bytesTotal",
        "percent",
        "rowsProcessed",
        "rowsSucceeded",
        "rowsFailed",
        "rowsPerSecond",
        "etaSeconds",
    }
    assert doc["status"] == "QUEUED"
    assert doc["createdAt"].endswith("Z")
    job = doc["jobId"]
    assert doc["links"] == {
        "self": f"/v1/jobs/{job}",
        "errors": f"/v1/jobs/{job}/errors",
        "errorsCsv": f"/v1/jobs/{job}/errors.csv",
    }


def test_list_is_newest_first_filtered_and_paged(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    s1, s2 = create_series(org[0]), create_series(org[0])
    made = [queued_job(org[0], s1) for _ in range(5)] + [queued_job(org[0], s2)]
    client.post(f"/v1/jobs/{made[0]}/cancel", headers=auth)

    everything = client.get("/v1/jobs", headers=auth).json()
    assert [j["jobId"] for j in everything["items"]] == sorted(made, reverse=True)
    assert everything["nextCursor"] is None

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"couponSeriesId": s1, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", headers=auth, params=params).json()
        seen += [j["jobId"] for j in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(made[:5], reverse=True)

    cancelled = client.get("/v1/jobs", headers=auth, params={"status": "CANCELLED"}).json()
    assert [j["jobId"] for j in cancelled["items"]] == [made[0]]
    assert client.get("/v1/jobs", headers=auth, params={"status": "NOPE"}).status_code == 400
    assert client.get("/v1/jobs", headers=auth, params={"cursor": "garbage"}).status_code == 400


def test_capillary_status_lists_the_series_jobs_newest_first(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    made = [queued_job(org[0], series) for _ in range(3)]
    body = client.get(
        f"/coupon/api/v1/upload/getUploadRedeemedCouponStatus/{series}", headers=auth
    ).json()
    assert body["success"] is True
    statuses = body["result"]["redeemUploadJobStatuses"]
    assert [s["jobId"] for s in statuses] == sorted(made, reverse=True)
    assert {s["uploadRedeemedCouponStatus"] for s in statuses} == {"QUEUED"}
    assert body["result"]["couponSeriesId"] == series


ROUTES = [
    ("GET", "/v1/jobs/{job}"),
    ("GET", "/v1/jobs/{job}/errors"),
    ("GET", "/v1/jobs/{job}/errors.csv"),
    ("POST", "/v1/jobs/{job}/cancel"),
    ("GET", "/coupon/api/v1/upload/getUploadRedeemedCouponStatus/{series}"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_another_orgs_job_is_404(
    client: TestClient, auth: dict[str, str], method: str, route: str
) -> None:
    owner, _ = other_org()
    series = create_series(owner)
    job = queued_job(owner, series)
    response = client.request(method, route.format(job=job, series=series), headers=auth)
    assert response.status_code == 404, response.text
    assert response.json()["success"] is False


def test_errors_csv_escapes_formula_cells(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path, worker: Any
) -> None:
    from tests.helpers import wait_for_job

    series = create_series(org[0])
    path = write_csv(
        tmp_path / "f.csv",
        ["date", "till", "mobile", "code", "note"],
        [(SAMPLE_MS, "=cmd|' /C calc'!A0", "9988776655", "@SUM(1)", "-2+3")],
    )
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    wait_for_job(client, auth, job)
    text = client.get(f"/v1/jobs/{job}/errors.csv", headers=auth).text
    line = text.split("\r\n")[1]
    assert "'=cmd|' /C calc'!A0" in line
    assert ",'@SUM(1),'-2+3," in line
