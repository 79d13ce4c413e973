"""Capillary's routes answer as Capillary documents them: the same field names, the same JSON
types, every field present; refusals in that route's own shape (tests/fixtures/capillary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, update

from core.models import UploadJob
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, job_id_of, upload, wait_for_job

FIXTURES = Path(__file__).parent / "fixtures" / "capillary"
UPLOAD = "/coupon/api/v1/upload/redeemFile/{series}"
STATUSES = "/coupon/api/v1/upload/getUploadRedeemedCouponStatus/{series}"


def documented(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def json_type(value: Any) -> str:
    # bool before int: in Python a bool is an int, in JSON it is not a number.
    for name, kind in (("boolean", bool), ("integer", int), ("string", str)):
        if isinstance(value, kind):
            return name
    return {type(None): "null", list: "array", dict: "object"}.get(type(value), "other")


# The four paths of an entry, strings in Capillary's samples or null, and null in ours when
# there is nothing to point at (DESIGN.md: no failed row, no applied row, the file purged; no
# staging table ever). Every other field has one JSON type.
STRING_OR_NULL = {"errorFileUrl", "successFileUrl", "uploadedFileUrl", "uploadTableName"}


def assert_same_shape(ours: Any, theirs: Any, where: str = "") -> None:
    """`ours` has exactly the fields of `theirs`, each of the same JSON type, all the way
    down (a list's items each as the documented first one)."""
    if where.rsplit(".", 1)[-1] in STRING_OR_NULL:
        assert json_type(ours) in ("null", "string"), (where, ours)
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), (where, ours)
        assert set(ours) == set(theirs), (where, sorted(set(ours) ^ set(theirs)))
        for name, value in theirs.items():
            assert_same_shape(ours[name], value, f"{where}.{name}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), (where, ours)
        for item in ours:
            assert_same_shape(item, theirs[0], f"{where}[]")
    else:
        assert json_type(ours) == json_type(theirs), (where, ours, theirs)


def test_the_fixtures_are_capillarys_documented_answers() -> None:
    # Guards the fixtures themselves: a hand edit that dropped a field would weaken every test.
    entry = documented("redeemFile.json")["result"]["redeemUploadJobStatuses"][0]
    assert len(entry) == 12 and entry["uploadTableName"] is None
    assert documented("redeemFile.json")["status"] == 200
    # Capillary's status sample has no fileName; DESIGN.md gives both routes the same result.
    assert "fileName" not in documented("getUploadRedeemedCouponStatus.json")["result"]
    assert set(documented("refusal.json")) == {"success", "status", "message", "errors"}


@pytest.fixture
def shop(org: tuple[int, str]) -> tuple[int, int]:
    """A series with one coupon, issued to a customer: a row that applies, and one that fails."""
    series = create_series(org[0])
    customer = create_customer(org[0], mobile="9988776655")
    create_coupon(org[0], series, "GOOD1", issued_to=customer)
    return org[0], series


def one_good_one_bad(tmp_path: Path) -> Path:
    rows = [(SAMPLE_MS, "T1", "9988776655", "GOOD1"), (SAMPLE_MS, "T1", "9988776655", "NOPE")]
    return write_csv(tmp_path / "redeemed.csv", ["date", "till", "mobile", "code"], rows)


def test_redeem_file_answers_200_with_every_documented_field(
    client: TestClient, auth: dict[str, str], shop: tuple[int, int], tmp_path: Path
) -> None:
    org_id, series = shop
    answer = upload(client, auth, series, one_good_one_bad(tmp_path), MOBILE_HEADERS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Checks the whole answer, not only its first entry: nothing more, nothing less.
    documented_body = documented("redeemFile.json")
    assert_same_shape(body, documented_body)
    assert body["success"] is True and body["status"] == 200
    result = body["result"]
    assert (result["orgId"], result["couponSeriesId"], result["fileName"]) == (
        org_id,
        series,
        "redeemed.csv",
    )
    (entry,) = result["redeemUploadJobStatuses"]  # shaped above, item by item
    job = entry["jobId"]
    assert entry["uploadRedeemedCouponStatus"] == "QUEUED"
    assert entry["createdOn"].isdigit() and entry["updatedOn"].isdigit()
    assert entry["errorFileUrl"] is None and entry["successFileUrl"] is None
    assert entry["uploadedFileUrl"] == f"/v1/jobs/{job}/file"
    assert entry["uploadTableName"] is None
    assert entry["uploadedFileName"] == "redeemed.csv"
    assert (entry["totalUploadedCount"], entry["actualRowCount"], entry["errorCount"]) == (0, 0, 0)


def test_the_status_list_answers_every_job_of_the_series_newest_first_in_capillarys_shape(
    client: TestClient,
    auth: dict[str, str],
    shop: tuple[int, int],
    tmp_path: Path,
    worker: Any,
) -> None:
    org_id, series = shop
    path = one_good_one_bad(tmp_path)
    first = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    wait_for_job(client, auth, first)
    # The same file again: its good row is a duplicate now, so this job applies nothing.
    second = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    wait_for_job(client, auth, second)

    answer = client.get(STATUSES.format(series=series), headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    theirs = documented("getUploadRedeemedCouponStatus.json")
    # Capillary's status sample lacks fileName, which DESIGN.md gives this result too.
    assert_same_shape(body, {**theirs, "result": {**theirs["result"], "fileName": "x.csv"}})
    assert body["status"] == 200
    assert (body["result"]["orgId"], body["result"]["couponSeriesId"]) == (org_id, series)
    assert body["result"]["fileName"] == "redeemed.csv"
    newest, oldest = body["result"]["redeemUploadJobStatuses"]
    assert (newest["jobId"], oldest["jobId"]) == (second, first)
    assert oldest["uploadRedeemedCouponStatus"] == "COMPLETED_WITH_ERRORS"
    assert (oldest["totalUploadedCount"], oldest["actualRowCount"], oldest["errorCount"]) == (
        2,
        1,
        1,
    )
    assert oldest["errorFileUrl"] == f"/v1/jobs/{first}/errors.csv"
    assert oldest["successFileUrl"] == f"/v1/jobs/{first}/successes.csv"
    assert int(oldest["updatedOn"]) >= int(oldest["createdOn"])
    # Nothing applied: no successes to point at; both rows failed.
    assert (newest["actualRowCount"], newest["errorCount"]) == (0, 2)
    assert newest["successFileUrl"] is None
    assert newest["errorFileUrl"] == f"/v1/jobs/{second}/errors.csv"

    capped = client.get(STATUSES.format(series=series), params={"limit": 1}, headers=auth).json()
    assert [e["jobId"] for e in capped["result"]["redeemUploadJobStatuses"]] == [second]

    # Once retention has purged the file, it is no longer offered.
    with admin_transaction() as session:
        session.execute(
            update(UploadJob).where(UploadJob.id == first).values(file_deleted_at=func.now())
        )
    after = client.get(STATUSES.format(series=series), headers=auth).json()
    purged = after["result"]["redeemUploadJobStatuses"][1]
    assert purged["uploadedFileUrl"] is None
    assert after["result"]["redeemUploadJobStatuses"][0]["uploadedFileUrl"] is not None


def test_an_empty_series_lists_no_job(
    client: TestClient, auth: dict[str, str], shop: tuple[int, int]
) -> None:
    body = client.get(STATUSES.format(series=shop[1]), headers=auth).json()
    assert body == {
        "success": True,
        "status": 200,
        "result": {
            "orgId": shop[0],
            "couponSeriesId": shop[1],
            "fileName": "",
            "redeemUploadJobStatuses": [],
        },
    }


def refusal_cases(series: int, auth: dict[str, str], path: Path) -> list[tuple[str, Any]]:
    form = {
        "customerIdentifier": "PHONE",
        "couponIdentifier": "COUPON_CODE",
        "uploadHeaders": json.dumps(MOBILE_HEADERS),
    }
    return [
        ("bad enum", ("POST", UPLOAD.format(series=series), auth, form, path, 400)),
        ("no key", ("POST", UPLOAD.format(series=series), {}, form, path, 401)),
        ("unknown series", ("POST", UPLOAD.format(series=series + 10**9), auth, form, path, 404)),
        ("bad series id", ("GET", STATUSES.format(series="x"), auth, None, None, 422)),
        ("status, unknown series", ("GET", STATUSES.format(series=10**12), auth, None, None, 404)),
        ("status, no key", ("GET", STATUSES.format(series=series), {}, None, None, 401)),
    ]


def test_capillary_routes_refuse_in_capillarys_shape_and_v1_routes_in_theirs(
    client: TestClient, auth: dict[str, str], shop: tuple[int, int], tmp_path: Path
) -> None:
    path = one_good_one_bad(tmp_path)
    theirs = documented("refusal.json")
    for name, (method, url, headers, form, file, status) in refusal_cases(shop[1], auth, path):
        files = {"file": (file.name, file.read_bytes(), "text/csv")} if file else None
        answer = client.request(method, url, headers=headers, data=form, files=files)
        assert answer.status_code == status, (name, answer.text)
        body = answer.json()
        assert_same_shape(body, theirs, name)
        assert body["success"] is False and body["status"] == status, name
        assert body["message"], name
    # The service's own routes keep their envelope: status is an object there.
    answer = client.get("/v1/jobs/999999999", headers=auth)
    assert answer.status_code == 404
    assert answer.json()["status"] == {"success": False, "code": 404, "message": "job not found"}
