"""Every request the upload endpoint can judge bad at once answers its 4xx, never a 5xx."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import keys
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series
from tests.helpers import MOBILE_HEADERS, job_id_of, refusal, upload

GOOD = f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,ABC\n".encode()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def post(
    client: TestClient,
    auth: dict[str, str],
    series: int,
    content: bytes | None,
    *,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    file_name: str = "r.csv",
) -> Any:
    form = {
        "customerIdentifier": "MOBILE",
        "couponIdentifier": "COUPON_CODE",
        "uploadHeaders": json.dumps(MOBILE_HEADERS),
    }
    form.update(fields or {})
    form = {k: v for k, v in form.items() if v is not None}
    files = None if content is None else {"file": (file_name, content, "text/csv")}
    return client.post(
        f"/coupon/api/v1/upload/redeemFile/{series}",
        headers={**auth, **(headers or {})},
        data=form,
        files=files,
    )


def assert_error(response: Any, status: int, field: str | None, *words: str) -> None:
    assert response.status_code == status, response.text
    _, text, errors = refusal(response)
    message = text.lower()
    for word in words:
        assert word.lower() in message, (word, message)
    if field is not None:
        assert [e["field"] for e in errors] == [field]


@pytest.fixture
def series(org: tuple[int, str]) -> int:
    return create_series(org[0])


CASES: list[tuple[str, dict[str, str], bytes, int, str, tuple[str, ...]]] = [
    (
        "unknown customer enum",
        {"customerIdentifier": "PHONE"},
        GOOD,
        400,
        "customerIdentifier",
        ("PHONE", "MOBILE"),
    ),
    ("unknown coupon enum", {"couponIdentifier": "CODE"}, GOOD, 400, "couponIdentifier", ("CODE",)),
    (
        "missing customer enum",
        {"customerIdentifier": ""},
        GOOD,
        400,
        "customerIdentifier",
        ("required",),
    ),
    ("headers not JSON", {"uploadHeaders": "{mobile: 2"}, GOOD, 400, "uploadHeaders", ("JSON",)),
    ("headers a list", {"uploadHeaders": "[1, 2]"}, GOOD, 400, "uploadHeaders", ("object",)),
    (
        "negative index",
        {"uploadHeaders": json.dumps({**MOBILE_HEADERS, "mobile": -1})},
        GOOD,
        400,
        "uploadHeaders",
        ("non-negative",),
    ),
    (
        # A string is a header name now: "2" is not one of this file's header cells.
        "string index",
        {"uploadHeaders": json.dumps({**MOBILE_HEADERS, "mobile": "2"})},
        GOOD,
        400,
        "uploadHeaders",
        ("'2'", "header row lacks"),
    ),
    (
        "boolean index",
        {"uploadHeaders": json.dumps({**MOBILE_HEADERS, "mobile": True})},
        GOOD,
        400,
        "uploadHeaders",
        ("integer",),
    ),
    (
        "duplicate index",
        {"uploadHeaders": json.dumps({**MOBILE_HEADERS, "billId": 2})},
        GOOD,
        400,
        "uploadHeaders",
        ("column 2",),
    ),
    (
        "unknown key",
        {"uploadHeaders": json.dumps({**MOBILE_HEADERS, "mobil": 5})},
        GOOD,
        400,
        "uploadHeaders",
        ("mobil",),
    ),
    (
        "mandatory key missing",
        {"uploadHeaders": json.dumps({"mobile": 2, "couponCode": 3, "redeemedDateInMillis": 0})},
        GOOD,
        400,
        "uploadHeaders",
        ("redeemedAt",),
    ),
    ("enum's key missing", {"customerIdentifier": "EMAIL"}, GOOD, 400, "uploadHeaders", ("email",)),
    (
        "index beyond first record",
        {"uploadHeaders": json.dumps({**MOBILE_HEADERS, "details": 9})},
        GOOD,
        400,
        "uploadHeaders",
        ("column 9", "4 column"),
    ),
    ("empty file", {}, b"", 400, "file", ("empty",)),
    ("header only", {}, b"date,till,mobile,code\n", 400, "file", ("no data record",)),
    ("blank lines only", {}, b"\n\r\n\n", 400, "file", ("no records",)),
    ("PNG", {}, PNG, 415, "file", ("PNG",)),
    ("gzip", {}, gzip.compress(GOOD), 415, "file", ("gzip",)),
    ("NUL bytes", {}, GOOD.replace(b"T1", b"T\x001"), 415, "file", ("NUL",)),
    ("dryRun neither true nor false", {"dryRun": "sure"}, GOOD, 400, "dryRun", ("true or false",)),
    (
        "callbackUrl to the metadata address",
        {"callbackUrl": "http://169.254.169.254/latest/meta-data/"},
        GOOD,
        400,
        "callbackUrl",
        ("non-public", "169.254.169.254"),
    ),
    (
        "callbackUrl not http",
        {"callbackUrl": "file:///etc/passwd"},
        GOOD,
        400,
        "callbackUrl",
        ("http",),
    ),
    ("bad delimiter", {"delimiter": "#"}, GOOD, 400, "delimiter", ("delimiter",)),
    ("bad hasHeader", {"hasHeader": "maybe"}, GOOD, 400, "hasHeader", ("true or false",)),
]


@pytest.mark.parametrize(
    ("fields", "content", "status", "field", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_upload_is_refused_with_a_clear_message(
    client: TestClient,
    auth: dict[str, str],
    series: int,
    fields: dict[str, str],
    content: bytes,
    status: int,
    field: str,
    words: tuple[str, ...],
) -> None:
    assert_error(post(client, auth, series, content, fields=fields), status, field, *words)


def test_zip_is_415(client: TestClient, auth: dict[str, str], series: int) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("r.csv", GOOD)
    assert_error(post(client, auth, series, buffer.getvalue()), 415, "file", "zip")


def test_utf16_with_bom_is_text_not_binary(
    client: TestClient, auth: dict[str, str], series: int
) -> None:
    content = "\ufeff".encode("utf-16-le") + GOOD.decode().encode("utf-16-le")
    assert post(client, auth, series, content).status_code == 200


def test_missing_file_part_is_400(client: TestClient, auth: dict[str, str], series: int) -> None:
    # A multipart body whose parts are all plain fields (httpx sends (None, value) as a field).
    fields: Any = {
        "customerIdentifier": (None, "MOBILE"),
        "couponIdentifier": (None, "COUPON_CODE"),
        "uploadHeaders": (None, json.dumps(MOBILE_HEADERS)),
    }
    response = client.post(f"/coupon/api/v1/upload/redeemFile/{series}", headers=auth, files=fields)
    assert_error(response, 400, "file", "file is required")


def test_two_files_are_400(client: TestClient, auth: dict[str, str], series: int) -> None:
    response = client.post(
        f"/coupon/api/v1/upload/redeemFile/{series}",
        headers=auth,
        data={
            "customerIdentifier": "MOBILE",
            "couponIdentifier": "COUPON_CODE",
            "uploadHeaders": json.dumps(MOBILE_HEADERS),
        },
        files=[("file", ("a.csv", GOOD, "text/csv")), ("file", ("b.csv", GOOD, "text/csv"))],
    )
    assert_error(response, 400, "file", "one file")


def test_a_body_that_is_not_multipart_is_400(
    client: TestClient, auth: dict[str, str], series: int
) -> None:
    response = client.post(
        f"/coupon/api/v1/upload/redeemFile/{series}", headers=auth, json={"file": "x"}
    )
    assert_error(response, 400, "file", "multipart")


def test_unknown_series_is_404(client: TestClient, auth: dict[str, str]) -> None:
    assert_error(post(client, auth, 999_999_999, GOOD), 404, None, "series")


def test_another_orgs_series_is_404(client: TestClient, auth: dict[str, str]) -> None:
    with admin_transaction() as session:
        other, _ = keys.create_org(session, "other-series-owner-" + str(id(session)))
        other_id = other.id
    assert_error(post(client, auth, create_series(other_id), GOOD), 404, None, "series")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer br_nope"},
        {"Authorization": "Basic abc"},
        {"x-cap-api-oauth-token": "nope"},
    ],
    ids=["none", "unknown bearer", "wrong scheme", "unknown capillary token"],
)
def test_no_valid_key_is_401(client: TestClient, series: int, headers: dict[str, str]) -> None:
    assert_error(post(client, headers, series, GOOD), 401, None, "key")


def test_capillary_token_header_authenticates(
    client: TestClient, org: tuple[int, str], series: int
) -> None:
    assert post(client, {"x-cap-api-oauth-token": org[1]}, series, GOOD).status_code == 200


def test_over_the_size_limit_is_413_while_streaming(
    client: TestClient,
    auth: dict[str, str],
    series: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 10_000)
    root = Path(get_settings().storage_url.removeprefix("file://"))
    before = sorted(p for p in root.rglob("*") if p.is_file())
    big = GOOD + b"".join(f"{SAMPLE_MS},T1,9988776655,C{i}\n".encode() for i in range(1000))
    assert_error(post(client, auth, series, big), 413, "file", "larger than")
    # Nothing of the refused file is left in storage, not even a partial write.
    assert sorted(p for p in root.rglob("*") if p.is_file()) == before


def test_over_the_row_limit_is_413(
    client: TestClient, auth: dict[str, str], series: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_rows", 50)
    rows = b"".join(f"{SAMPLE_MS},T1,9988776655,C{i}\r\n".encode() for i in range(60))
    assert_error(post(client, auth, series, GOOD + rows), 413, "file", "lines")


def test_an_accepted_upload_answers_200_in_capillarys_shape(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], series: int
) -> None:
    response = post(client, auth, series, GOOD, fields={"details": "till batch 7"})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["status"] == 200
    result = body["result"]
    assert result["orgId"] == org[0]
    assert result["couponSeriesId"] == series
    assert result["fileName"] == "r.csv"
    (status,) = result["redeemUploadJobStatuses"]
    assert isinstance(status["jobId"], int)
    assert status["uploadRedeemedCouponStatus"] == "QUEUED"
    assert status["createdOn"].isdigit() and status["updatedOn"].isdigit()
    # Nothing has failed or been applied yet; the file is kept.
    assert status["errorFileUrl"] is None and status["successFileUrl"] is None
    assert status["uploadedFileUrl"] == f"/v1/jobs/{status['jobId']}/file"
    assert status["uploadTableName"] is None and status["uploadedFileName"] == "r.csv"
    assert (status["totalUploadedCount"], status["actualRowCount"], status["errorCount"]) == (
        0,
        0,
        0,
    )
    doc = client.get(f"/v1/jobs/{status['jobId']}", headers=auth).json()
    assert doc["details"] == "till batch 7"
    assert doc["fileSize"] == len(GOOD)


def test_semicolon_file_and_headerless_file_are_detected(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path
) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_bytes(f"date;till;mobile;code\n{SAMPLE_MS};T1;9988776655;A,B\n".encode())
    assert upload(client, auth, series, semi, MOBILE_HEADERS).status_code == 200
    bare = tmp_path / "bare.csv"
    bare.write_bytes(f"{SAMPLE_MS},T1,9988776655,A\n".encode())
    job = job_id_of(upload(client, auth, series, bare, MOBILE_HEADERS))
    from core.jobs.queries import get_job

    with admin_transaction() as session:
        row = get_job(session, _org_of(client, auth), job)
        assert row.has_header is False
        assert row.report_header == ["redeemedDateInMillis", "redeemedAt", "mobile", "couponCode"]


def _org_of(client: TestClient, auth: dict[str, str]) -> int:
    with admin_transaction() as session:
        org_id = keys.authenticate(session, auth["Authorization"].split()[1])
    assert org_id is not None
    return org_id


def test_idempotency_key_gives_the_same_job_and_409_for_another_request(
    client: TestClient, auth: dict[str, str], series: int
) -> None:
    key = {"Idempotency-Key": "batch-2026-11-25"}
    first = job_id_of(post(client, auth, series, GOOD, headers=key))
    assert job_id_of(post(client, auth, series, GOOD, headers=key)) == first
    # The same bytes under another name are the same request (DESIGN.md: org, series, form
    # fields and the file's SHA-256).
    renamed = post(client, auth, series, GOOD, headers=key, file_name="retry-1234.csv")
    assert job_id_of(renamed) == first
    changed = post(client, auth, series, GOOD + b"\n", headers=key)
    assert_error(changed, 409, "Idempotency-Key", "different request")
    other_fields = post(client, auth, series, GOOD, headers=key, fields={"details": "x"})
    assert other_fields.status_code == 409


def test_too_many_multipart_parts_is_400(
    client: TestClient, auth: dict[str, str], series: int
) -> None:
    limit = get_settings().max_multipart_parts
    fields: Any = {f"extra{i}": (None, "x") for i in range(limit + 1)}
    fields["file"] = ("r.csv", GOOD, "text/csv")
    response = client.post(f"/coupon/api/v1/upload/redeemFile/{series}", headers=auth, files=fields)
    assert_error(response, 400, "request", "too many multipart parts")


def test_an_oversized_form_field_is_400(
    client: TestClient, auth: dict[str, str], series: int
) -> None:
    big = "x" * (get_settings().max_field_bytes + 1)
    assert_error(
        post(client, auth, series, GOOD, fields={"details": big}), 400, "details", "larger"
    )
