"""POST /v1/jobs: the upload of this service's own clients, answered with the job document."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from core import keys
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, refusal, upload, wait_for_job

FORM = {
    "customerIdentifier": "MOBILE",
    "couponIdentifier": "COUPON_CODE",
    "uploadHeaders": json.dumps(MOBILE_HEADERS),
}


def a_file(tmp_path: Path) -> Path:
    rows = [(SAMPLE_MS, "T1", "9988776655", "NOPE")]
    return write_csv(tmp_path / "mine.csv", ["date", "till", "mobile", "code"], rows)


def post_job(
    client: TestClient,
    headers: dict[str, str],
    series: int | None,
    path: Path,
    form: dict[str, str] | None = None,
) -> Any:
    return client.post(
        "/v1/jobs",
        params={} if series is None else {"couponSeriesId": series},
        headers=headers,
        data=FORM if form is None else form,
        files={"file": (path.name, path.read_bytes(), "text/csv")},
    )


def labelled_key(org_id: int, label: str) -> tuple[int, dict[str, str]]:
    with admin_transaction() as session:
        issued = keys.create_key(session, org_id, label=label)
    return issued.id, {"Authorization": f"Bearer {issued.key}"}


def test_a_new_job_is_202_with_its_document_and_location(
    client: TestClient, org: tuple[int, str], tmp_path: Path, worker: Any
) -> None:
    series = create_series(org[0])
    key_id, headers = labelled_key(org[0], "till sync")
    path = a_file(tmp_path)
    answer = post_job(client, headers, series, path)
    assert answer.status_code == 202, answer.text
    document = answer.json()
    job = document["jobId"]
    assert isinstance(job, int)
    assert answer.headers["Location"] == f"/v1/jobs/{job}"
    assert (document["status"], document["kind"], document["couponSeriesId"]) == (
        "QUEUED",
        "IMPORT",
        series,
    )
    assert document["fileName"] == "mine.csv"
    assert document["fileSha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert document["uploadedBy"] == {"keyId": key_id, "keyLabel": "till sync"}
    assert document["links"]["self"] == f"/v1/jobs/{job}"
    assert document["links"]["file"] == f"/v1/jobs/{job}/file"
    # The same document at its Location, and the job runs like any other.
    ended = wait_for_job(client, headers, job)
    assert ended["status"] == "COMPLETED_WITH_ERRORS"
    assert ended["uploadedBy"] == document["uploadedBy"]
    # The label as it was: relabelling the key later does not rewrite who uploaded.
    with admin_transaction() as session:
        session.execute(
            text("UPDATE api_keys SET label = 'renamed' WHERE id = :id"), {"id": key_id}
        )
    assert client.get(f"/v1/jobs/{job}", headers=headers).json()["uploadedBy"]["keyLabel"] == (
        "till sync"
    )


def test_both_upload_routes_record_who_uploaded(
    client: TestClient, org: tuple[int, str], auth: dict[str, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    answer = upload(client, auth, series, a_file(tmp_path), MOBILE_HEADERS)
    job = answer.json()["result"]["redeemUploadJobStatuses"][0]["jobId"]
    document = client.get(f"/v1/jobs/{job}", headers=auth).json()
    # The fixture's org comes with one key, labelled "initial" (core/keys.py).
    assert document["uploadedBy"]["keyLabel"] == "initial"
    assert isinstance(document["uploadedBy"]["keyId"], int)


def test_one_upload_code_an_idempotency_key_gives_the_same_job_on_either_route(
    client: TestClient, org: tuple[int, str], auth: dict[str, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    path = a_file(tmp_path)
    headers = {**auth, "Idempotency-Key": "both-routes"}
    first = post_job(client, headers, series, path)
    assert first.status_code == 202, first.text
    again = post_job(client, headers, series, path)
    assert again.status_code == 202 and again.json()["jobId"] == first.json()["jobId"]
    capillary = upload(client, auth, series, path, MOBILE_HEADERS, headers=headers)
    assert capillary.status_code == 200, capillary.text
    made = capillary.json()["result"]["redeemUploadJobStatuses"][0]["jobId"]
    assert made == first.json()["jobId"]
    # The same key with another file: 409, in this route's shape.
    other = write_csv(tmp_path / "other.csv", ["date", "till", "mobile", "code"], [(1, 2, 3, 4)])
    conflict = post_job(client, headers, series, other)
    assert conflict.status_code == 409
    assert "Idempotency-Key" in refusal(conflict)[1]


def test_refusals_are_in_the_v1_shape(
    client: TestClient, org: tuple[int, str], auth: dict[str, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    path = a_file(tmp_path)
    cases = [
        ("no series", post_job(client, auth, None, path), 422, "couponSeriesId"),
        ("unknown series", post_job(client, auth, series + 10**9, path), 404, "series"),
        (
            "bad enum",
            post_job(client, auth, series, path, {**FORM, "customerIdentifier": "PHONE"}),
            400,
            "customerIdentifier",
        ),
        ("no key", post_job(client, {}, series, path), 401, "API key"),
    ]
    for name, answer, status, word in cases:
        assert answer.status_code == status, (name, answer.text)
        code, message, _ = refusal(answer)  # /v1's envelope: status an object
        assert code == status and word in message, (name, message)
    # Nothing was made by any of them.
    listed = client.get("/v1/jobs", params={"couponSeriesId": series}, headers=auth).json()
    assert listed["items"] == []
