"""uploadHeaders by header name: matched case- and space-insensitively, stored as indices."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series
from tests.helpers import job_id_of, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

HEADER = "Redeemed Date In Millis,Till,Mobile No,Coupon Code,Bill ID"


@pytest.fixture
def series(org: tuple[int, str]) -> int:
    series = create_series(org[0])
    customer = create_customer(org[0], mobile="9811100001")
    create_coupon(org[0], series, "BYNAME", issued_to=customer)
    return series


def a_file(tmp_path: Path, header: str = HEADER) -> Path:
    path = tmp_path / "named.csv"
    path.write_text(f"{header}\n{SAMPLE_MS},T1,9811100001,BYNAME,B1\n")
    return path


def test_columns_mapped_by_header_name_are_found_whatever_their_case_and_spaces(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path
) -> None:
    names = {
        "redeemedDateInMillis": "redeemeddateinmillis",
        "redeemedAt": " TILL ",
        "mobile": "mobile no",
        "couponCode": "CouponCode",
        "billId": 4,  # indices and names mix
    }
    job = job_id_of(upload(client, auth, series, a_file(tmp_path), names))
    with admin_transaction() as session:
        stored = session.execute(
            text("SELECT upload_headers, has_header FROM upload_jobs WHERE id = :j"), {"j": job}
        ).one()
    assert stored.upload_headers == {
        "redeemedDateInMillis": 0,
        "redeemedAt": 1,
        "mobile": 2,
        "couponCode": 3,
        "billId": 4,
    }
    assert stored.has_header is True
    doc = wait_for_job(client, auth, job)
    assert (doc["status"], doc["progress"]["rowsSucceeded"]) == ("COMPLETED", 1)


def problem(answer: object) -> tuple[int, str, str]:
    body = answer.json()  # type: ignore[attr-defined]
    error = body["errors"][0]
    return answer.status_code, error["field"], error["message"]  # type: ignore[attr-defined]


BASE = {"redeemedDateInMillis": "Redeemed Date In Millis", "redeemedAt": "Till"}


def test_an_unknown_header_name_is_400_listing_the_header_columns(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path
) -> None:
    names = {**BASE, "mobile": "Phone", "couponCode": "Coupon Code"}
    status, field, message = problem(upload(client, auth, series, a_file(tmp_path), names))
    assert (status, field) == (400, "uploadHeaders")
    assert "'Phone'" in message
    for column in ("'Redeemed Date In Millis'", "'Till'", "'Mobile No'", "'Coupon Code'"):
        assert column in message


def test_header_names_with_has_header_false_are_400(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path
) -> None:
    names = {**BASE, "mobile": "Mobile No", "couponCode": "Coupon Code"}
    answer = upload(client, auth, series, a_file(tmp_path), names, extra={"hasHeader": "false"})
    status, field, message = problem(answer)
    assert (status, field) == (400, "uploadHeaders")
    assert "hasHeader" in message


def test_a_name_the_header_has_twice_is_400(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path
) -> None:
    path = a_file(tmp_path, "Redeemed Date In Millis,Till,Mobile No,Code,code")
    names = {**BASE, "mobile": "Mobile No", "couponCode": "CODE"}
    status, field, message = problem(upload(client, auth, series, path, names))
    assert (status, field) == (400, "uploadHeaders")
    assert "2 times" in message


def test_two_keys_naming_one_column_are_400(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path
) -> None:
    names = {**BASE, "mobile": "Mobile No", "couponCode": "Coupon Code", "billId": "mobile no"}
    status, field, message = problem(upload(client, auth, series, a_file(tmp_path), names))
    assert (status, field) == (400, "uploadHeaders")
    assert "'mobile' and 'billId' to column 2" in message


@pytest.mark.parametrize("value", ["", "   ", True, -1, 1.5, None, ["Till"]])
def test_a_value_that_is_neither_index_nor_name_is_400(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path, value: object
) -> None:
    names = {**BASE, "mobile": value, "couponCode": "Coupon Code"}
    status, field, message = problem(upload(client, auth, series, a_file(tmp_path), names))
    assert (status, field) == (400, "uploadHeaders")
    assert "index or a header name" in message
