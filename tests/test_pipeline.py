"""The whole pipeline against a real Postgres, Redis and Celery worker process."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.db import transaction
from tests.conftest import FIXTURES
from tests.dbtools import admin_transaction
from tests.factories import (
    SAMPLE_MS,
    create_coupon,
    create_customer,
    create_series,
    redeemable_file,
    write_csv,
)
from tests.helpers import MOBILE_HEADERS, all_row_errors, job_id_of, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

FULL_HEADERS = {**MOBILE_HEADERS, "billId": 4, "billNumber": 5}
HEADER = "redeemedDateInMillis,redeemedAt,mobile,couponCode,billId,billNumber"


def scalar(org_id: int, sql: str, **params: object) -> int:
    with transaction(org_id) as session:
        return int(session.execute(text(sql), {"org": org_id, **params}).scalar_one())


def redemptions_of_job(org_id: int, job_id: int) -> int:
    return scalar(org_id, "SELECT count(*) FROM redemptions WHERE job_id = :job", job=job_id)


def counters_mismatch(org_id: int) -> list[tuple[int, int, int]]:
    """Coupons whose counter disagrees with the redemptions table."""
    with transaction(org_id) as session:
        rows = session.execute(
            text(
                """
                SELECT k.id, coalesce(max(n.redemption_count), 0), count(r.id)
                FROM coupons k
                LEFT JOIN coupon_counters n ON n.coupon_id = k.id
                LEFT JOIN redemptions r ON r.coupon_id = k.id
                WHERE k.org_id = :org GROUP BY k.id
                HAVING coalesce(max(n.redemption_count), 0) <> count(r.id)
                """
            ),
            {"org": org_id},
        ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def test_both_samples_complete_with_one_redemption_each(client: TestClient) -> None:
    from core.demo import seed_demo

    with admin_transaction() as session:
        demo = seed_demo(session)
    auth = {"Authorization": f"Bearer {demo.api_key}"}
    for sample, customer, coupon in (
        ("sample1", "USER_ID", "COUPON_ID"),
        ("sample2", "MOBILE", "COUPON_CODE"),
    ):
        headers = (FIXTURES / f"{sample}.uploadHeaders.json").read_text()
        job_id = job_id_of(
            upload(
                client,
                auth,
                demo.series_id,
                FIXTURES / f"{sample}.csv",
                headers,
                customer=customer,
                coupon=coupon,
            )
        )
        doc = wait_for_job(client, auth, job_id)
        assert doc["status"] == "COMPLETED", doc
        assert doc["progress"]["rowsProcessed"] == 1
        assert doc["progress"]["rowsSucceeded"] == 1
        assert redemptions_of_job(demo.org_id, job_id) == 1
    assert counters_mismatch(demo.org_id) == []


class World:
    """Series A and its customers and coupons, built so that one file can hit most codes."""

    def __init__(self, org_id: int) -> None:
        self.org_id = org_id
        self.series = create_series(
            org_id,
            name="A",
            max_redemptions_per_coupon=1,
            same_user_multiple_redeem=False,
            max_redemptions_per_customer=2,
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            valid_till=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
            any_user=False,
            allowed_till_ids=["T1", "T2"],
        )
        base = 7_100_000_000 + org_id * 1000
        self.mobiles = [str(base + i) for i in range(4)]
        c1, c2, c3, c4 = (create_customer(org_id, mobile=m) for m in self.mobiles)
        for code in ("K1", "K5", "K6"):
            create_coupon(org_id, self.series, code, issued_to=c1)
        create_coupon(org_id, self.series, "K3", issued_to=c2)
        expired = datetime(2020, 6, 1, tzinfo=UTC)
        create_coupon(org_id, self.series, "K4", issued_to=c1, expires_at=expired)
        revoked = datetime(2020, 1, 2, tzinfo=UTC)
        create_coupon(org_id, self.series, "REV", issued_to=c1, revoked_at=revoked)
        create_coupon(org_id, self.series, "FIX1", issued_to=c3)
        create_coupon(org_id, self.series, "FIX2", issued_to=c3)
        create_coupon(org_id, self.series, "FIX3", issued_to=c4)


def test_every_error_code_is_reported_once_at_its_row_and_the_fixed_report_applies(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    world = World(org[0])
    m1, m2, m3, m4 = world.mobiles
    ms = SAMPLE_MS
    lines = [
        HEADER,  # row 1
        f"{ms},T1,{m1},K1,B1,N1",  # 2: good
        f"{ms},T1,{m1},caf\xe9,B1,N1",  # 3: 807 (a Latin-1 byte in a UTF-8 file)
        f"{ms},T1",  # 4: 801
        f"{ms},T1,,K5,B1,N1",  # 5: 802
        f"{ms},{'T' * 101},{m1},K5,B1,N1",  # 6: 804
        f"{ms},T1,9.98877E+09,K5,B1,N1",  # 7: 805
        f"abc,T1,{m4},FIX3,B1,N1",  # 8: 729
        f"{ms},T1,7000000001,FIX2,B1,N1",  # 9: 701
        f"{ms},T1,{m1},NOPE,B1,N1",  # 10: 702
        f"{ms},T1,{m1},REV,B1,N1",  # 11: 660
        f"{ms},T1,{m1},K3,B1,N1",  # 12: 703
        f"1767225600000,T1,{m1},K5,B1,N1",  # 13: 712 (2026-01-01, after validTill)
        f"{ms},T1,{m1},K4,B1,N1",  # 14: 713
        f"{ms},T9,{m1},K5,B1,N1",  # 15: 735
        f"{ms},T1,{m1},K1,B1,N1",  # 16: 790 (row 2 again)
        f"{ms + 1},T1,{m1},K1,B1,N1",  # 17: 716
        "",  # 18: blank: skipped, but keeps its number
        f"{ms},T2,+{m1[:3]}-{m1[3:]},K5,B2,N2",  # 19: good (mobile normalised)
        f"{ms},T2,{m1},K6,B3,N3",  # 20: 736 (series limit of 2 per customer)
        f"{ms},T1,{m2},FIX1,B9,N9",  # 21: 703 (FIX1 is customer 3's)
    ]
    path = tmp_path / "mixed.csv"
    path.write_bytes("\r\n".join(lines).encode("latin-1") + b"\r\n")

    job_id = job_id_of(upload(client, auth, world.series, path, FULL_HEADERS))
    doc = wait_for_job(client, auth, job_id)
    assert doc["status"] == "COMPLETED_WITH_ERRORS", doc
    expected = {
        3: 807,
        4: 801,
        5: 802,
        6: 804,
        7: 805,
        8: 729,
        9: 701,
        10: 702,
        11: 660,
        12: 703,
        13: 712,
        14: 713,
        15: 735,
        16: 790,
        17: 716,
        20: 736,
        21: 703,
    }
    errors = all_row_errors(client, auth, job_id)
    assert [(e["rowNumber"], e["errorCode"]) for e in errors] == sorted(expected.items())
    assert doc["progress"]["rowsProcessed"] == 19  # 20 records after the header, one blank
    assert doc["progress"]["rowsSucceeded"] == 2
    assert doc["progress"]["rowsFailed"] == 17
    summary = {s["code"]: s["count"] for s in doc["errorSummary"]}
    codes = list(expected.values())
    assert summary == {code: codes.count(code) for code in set(codes)}
    assert redemptions_of_job(world.org_id, job_id) == 2
    assert counters_mismatch(world.org_id) == []

    # The report, fixed as in a spreadsheet and uploaded again with the same uploadHeaders.
    report = client.get(f"/v1/jobs/{job_id}/errors.csv", headers=auth)
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    assert report.content.endswith(b"\r\n")
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8"))))
    assert rows[0] == [*HEADER.split(","), "rowNumber", "errorCode", "errorName", "errorMessage"]
    assert [(int(r[6]), int(r[7])) for r in rows[1:]] == sorted(expected.items())
    assert all(len(r) == 10 for r in rows)  # padded (row 4) to the header's width
    fixes = {8: {0: str(ms + 5)}, 9: {2: m3}, 21: {2: m3}}
    for row in rows[1:]:
        for column, value in fixes.get(int(row[6]), {}).items():
            row[column] = value
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)

    job2 = job_id_of(upload(client, auth, world.series, fixed, FULL_HEADERS))
    doc2 = wait_for_job(client, auth, job2)
    assert doc2["progress"]["rowsProcessed"] == len(expected)
    assert doc2["progress"]["rowsSucceeded"] == 3
    assert redemptions_of_job(world.org_id, job2) == 3
    errors2 = all_row_errors(client, auth, job2)
    # New row numbers: the report's data rows start at 2, in the original order.
    original = [number for number, _ in sorted(expected.items())]
    still_failing = {original[e["rowNumber"] - 2] for e in errors2}
    assert still_failing == set(expected) - set(fixes)
    assert counters_mismatch(world.org_id) == []


def test_second_upload_of_the_same_file_redeems_nothing(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    world = World(org[0])
    m1, _, m3, m4 = world.mobiles
    path = write_csv(
        tmp_path / "twice.csv",
        None,
        [
            (SAMPLE_MS, "T1", m1, "K1", "", ""),
            (SAMPLE_MS, "T1", m3, "FIX1", "B", "N"),
            (SAMPLE_MS, "T1", m4, "FIX3", "", "7"),
        ],
    )
    first = wait_for_job(
        client, auth, job_id_of(upload(client, auth, world.series, path, FULL_HEADERS))
    )
    assert first["status"] == "COMPLETED"
    assert first["progress"]["rowsSucceeded"] == 3
    second_id = job_id_of(upload(client, auth, world.series, path, FULL_HEADERS))
    second = wait_for_job(client, auth, second_id)
    assert second["status"] == "COMPLETED_WITH_ERRORS"
    assert second["progress"]["rowsSucceeded"] == 0
    assert [e["errorCode"] for e in all_row_errors(client, auth, second_id)] == [790, 790, 790]
    assert redemptions_of_job(world.org_id, second_id) == 0
    assert counters_mismatch(world.org_id) == []


def test_single_use_coupon_redeemed_by_another_customer_is_711(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    org_id = org[0]
    series = create_series(org_id, any_user=True, max_redemptions_per_coupon=1)
    a = create_customer(org_id, email="a@example.com")
    create_customer(org_id, email="b@example.com")
    create_coupon(org_id, series, "ONE", issued_to=a)
    path = write_csv(
        tmp_path / "711.csv",
        ["date", "till", "email", "code"],
        [(SAMPLE_MS, "T", "A@Example.com", "ONE"), (SAMPLE_MS + 1, "T", "b@example.com", "ONE")],
    )
    headers = {"redeemedDateInMillis": 0, "redeemedAt": 1, "email": 2, "couponCode": 3}
    job = job_id_of(upload(client, auth, series, path, headers, customer="EMAIL"))
    assert wait_for_job(client, auth, job)["progress"]["rowsSucceeded"] == 1
    assert [(e["rowNumber"], e["errorCode"]) for e in all_row_errors(client, auth, job)] == [
        (3, 711)
    ]


def test_multi_use_coupon_used_up_is_714(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    org_id = org[0]
    series = create_series(
        org_id, any_user=True, max_redemptions_per_coupon=2, same_user_multiple_redeem=True
    )
    customer = create_customer(org_id, external_id="ext-1")
    coupon = create_coupon(org_id, series, "MULTI")
    path = write_csv(
        tmp_path / "714.csv",
        None,
        [(SAMPLE_MS + i, "T", "ext-1", coupon) for i in range(3)],
    )
    headers = {"redeemedDateInMillis": 0, "redeemedAt": 1, "externalId": 2, "couponId": 3}
    job = job_id_of(
        upload(client, auth, series, path, headers, customer="EXTERNAL_ID", coupon="COUPON_ID")
    )
    doc = wait_for_job(client, auth, job)
    assert doc["progress"]["rowsSucceeded"] == 2
    assert [(e["rowNumber"], e["errorCode"]) for e in all_row_errors(client, auth, job)] == [
        (3, 714)
    ]
    assert customer > 0
    assert counters_mismatch(org_id) == []


def _big_file(org_id: int, series: int, rows: int, tmp_path: Path, database_url: str) -> Path:
    base = 6_000_000_000 + org_id * 1_000_000
    return redeemable_file(
        tmp_path / "big.csv", database_url, org_id, series, rows, mobile_base=base
    )


def test_a_200k_row_file_completes_with_progress_rising_on_the_way(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    path = _big_file(org_id, series, 200_000, tmp_path, database_url)
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    seen: list[int] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        doc = client.get(f"/v1/jobs/{job}", headers=auth).json()
        if doc["status"] not in ("QUEUED", "RUNNING"):
            break
        processed = doc["progress"]["rowsProcessed"]
        if processed and (not seen or processed > seen[-1]):
            seen.append(processed)
        time.sleep(0.05)
    assert doc["status"] == "COMPLETED", doc
    assert doc["progress"]["rowsSucceeded"] == 200_000
    assert doc["progress"]["percent"] == 100.0
    assert len([n for n in seen if 0 < n < 200_000]) >= 2, seen
    assert redemptions_of_job(org_id, job) == 200_000


def test_cancel_stops_a_running_job_at_a_chunk_boundary(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    path = _big_file(org_id, series, 200_000, tmp_path, database_url)
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job}", headers=auth).json()["progress"]["rowsProcessed"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    answer = client.post(f"/v1/jobs/{job}/cancel", headers=auth)
    assert answer.status_code == 200, answer.text
    doc = wait_for_job(client, auth, job)
    assert doc["status"] == "CANCELLED"
    processed = doc["progress"]["rowsProcessed"]
    assert 0 < processed < 200_000
    assert processed % 10_000 == 0  # whole chunks only
    assert redemptions_of_job(org_id, job) == processed
    assert counters_mismatch(org_id) == []
    again = client.post(f"/v1/jobs/{job}/cancel", headers=auth)
    assert again.status_code == 409
