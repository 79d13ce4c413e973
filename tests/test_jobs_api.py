"""The job API: listing, paging, Capillary's status list, cancel, and other orgs' jobs."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import keys, uploads
from core.db import transaction
from core.storage import get_storage
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, job_id_of, upload

QUEUED_FILE = f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,A\n".encode()


def queued_job(org_id: int, series_id: int) -> int:
    """A job made in core and never enqueued, so it stays QUEUED."""
    sink = uploads.FileSink(get_storage(), org_id)
    sink.write(QUEUED_FILE)
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
        "kind",
        "couponSeriesId",
        "status",
        "fileName",
        "fileSize",
        "fileSha256",
        "uploadedBy",
        "revertsJobId",
        "revertedByJobId",
        "maxErrorRate",
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
    assert doc["kind"] == "IMPORT"
    assert doc["fileSha256"] == hashlib.sha256(QUEUED_FILE).hexdigest()
    # Made in core without a key: nobody to name.
    assert doc["uploadedBy"] == {"keyId": None, "keyLabel": None}
    assert doc["revertsJobId"] is None and doc["revertedByJobId"] is None
    assert doc["maxErrorRate"] is None
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
        "successes": f"/v1/jobs/{job}/successes",
        "successesCsv": f"/v1/jobs/{job}/successes.csv",
        "file": f"/v1/jobs/{job}/file",
    }


def revert_row(org_id: int, import_id: int, status: str) -> int:
    """A REVERT job of an import, as the revert route makes it (no file of its own: migration
    0012), in `status`; never run."""
    with admin_transaction() as session:
        made = session.execute(
            text(
                "INSERT INTO upload_jobs (org_id, series_id, status, kind, reverts_job_id,"
                " customer_identifier, coupon_identifier, upload_headers, delimiter, has_header,"
                " encoding, report_header, file_name, file_size, file_sha256, storage_key)"
                " SELECT org_id, series_id, :status, 'REVERT', id, customer_identifier,"
                " coupon_identifier, upload_headers, delimiter, has_header, encoding,"
                " report_header, file_name, file_size, file_sha256, ''"
                " FROM upload_jobs WHERE id = :job AND org_id = :org RETURNING id"
            ),
            {"status": status, "job": import_id, "org": org_id},
        ).scalar_one()
    return int(made)


def test_an_import_names_its_revert_unless_the_revert_failed(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    reverted, failed_only, untouched = (queued_job(org[0], series) for _ in range(3))
    revert_row(org[0], failed_only, "FAILED")
    revert = revert_row(org[0], reverted, "QUEUED")
    revert_row(org[0], reverted, "FAILED")  # an earlier attempt that failed does not count

    def by_id(items: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        return {item["jobId"]: item for item in items}

    listed = by_id(client.get("/v1/jobs", headers=auth).json()["items"])
    assert len(listed) == 6  # three imports, three reverts: the join doubles no row
    polled = {job: client.get(f"/v1/jobs/{job}", headers=auth).json() for job in listed}
    for documents in (listed, polled):
        assert documents[reverted]["revertedByJobId"] == revert
        assert documents[failed_only]["revertedByJobId"] is None
        assert documents[untouched]["revertedByJobId"] is None
        assert documents[revert]["kind"] == "REVERT"
        assert documents[revert]["revertsJobId"] == reverted
        assert documents[revert]["links"]["file"] is None  # a revert has no file of its own
    # The cancel's answer reads it in the request's own session.
    cancelled = client.post(f"/v1/jobs/{reverted}/cancel", headers=auth).json()
    assert cancelled["revertedByJobId"] == revert


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
    ("GET", "/v1/jobs/{job}/file"),
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
