"""Cells starting with a carriage return or a tab: escaped in the report, unescaped on upload.

What DESIGN.md fixes: the errors CSV puts `'` before every cell starting with `=`, `+`, `-`,
`@`, tab or CR; an upload drops a leading `'` before those; and every field is trimmed, so a
leading CR or tab never reaches the database either way. A fixed report must upload as it is:
every field stored as the same row uploaded directly would store it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.reports import escape
from core.rows import clean
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series
from tests.helpers import ALL_COLUMNS_HEADERS, all_row_errors, job_id_of, upload, wait_for_job

HEADERS = ALL_COLUMNS_HEADERS
HEADER_ROW = ["date", "till", "mobile", "code", "bill", "number", "details"]
MOBILE = "9000000001"
LEADS = pytest.mark.parametrize("lead", ["\r", "\t"], ids=["cr", "tab"])


@pytest.mark.parametrize(
    ("cell", "stored"),
    [
        ("'\r=x", "=x"),  # the report's escape, then the trim
        ("'\t@x", "@x"),
        ("'\rB-1", "B-1"),
        ("\rB-1", "B-1"),  # unescaped: the trim alone
        ("\tB-1", "B-1"),
        ("  '\t=1+1  ", "=1+1"),  # spaces around the escaped cell: trimmed first
        ("'\r\n=x", "=x"),
        ("'x", "'x"),  # a quote before anything else is data
        ("'", "'"),
        ("a\rb", "a\rb"),  # only the ends are trimmed
    ],
    ids=lambda value: repr(value),
)
def test_clean_drops_the_reports_escape_and_trims(cell: str, stored: str) -> None:
    assert clean(cell) == stored


@pytest.mark.parametrize(
    "cell",
    [
        "\r=x",
        "\t@SUM(A1)",
        "\rB-1",
        "\tB-1",
        "\r\n-5",
        "=1+1",
        "plain",
        "\t",
        "\r",
        "\t ",
        "\r\n",
    ],
    ids=lambda value: repr(value),
)
def test_a_cell_reads_the_same_escaped_by_the_report_or_not(cell: str) -> None:
    assert escape(cell).startswith("'") == cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert clean(escape(cell)) == clean(cell)


def write_rows(path: Path, rows: list[list[str]], *, quote_all: bool = False) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerows(
            rows
        )
    return path


def report(client: TestClient, auth: dict[str, str], job_id: int) -> list[list[str]]:
    answer = client.get(f"/v1/jobs/{job_id}/errors.csv", headers=auth)
    assert answer.status_code == 200
    # newline="": a CR inside a quoted cell is data, not a line end.
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8"), newline="")))


def stored_redemption(job_id: int) -> Any:
    with admin_transaction() as session:
        return session.execute(
            text(
                "SELECT r.till_id, r.bill_id, r.bill_number, r.details, k.code "
                "FROM redemptions r JOIN coupons k ON k.id = r.coupon_id WHERE r.job_id = :j"
            ),
            {"j": job_id},
        ).one()


@pytest.fixture
def series(org: tuple[int, str]) -> int:
    org_id = org[0]
    # Any number of redemptions, so that each upload of a test can redeem.
    series_id = create_series(
        org_id, any_user=True, max_redemptions_per_coupon=None, same_user_multiple_redeem=True
    )
    create_customer(org_id, mobile=MOBILE)
    create_coupon(org_id, series_id, "GOOD")
    return series_id


@pytest.mark.usefixtures("worker")
@LEADS
def test_cells_led_by_cr_or_tab_survive_the_report_and_a_re_upload(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path, lead: str
) -> None:
    cells = [
        str(SAMPLE_MS),
        f"{lead}T1",
        MOBILE,
        "UNKNOWN",  # the row fails (702) and goes to the report
        f"{lead}B-1",
        f"{lead}=1+1",  # a formula behind the control character
        f"{lead}note{lead}kept",  # inside the cell it is data
    ]
    original = write_rows(tmp_path / "original.csv", [HEADER_ROW, cells], quote_all=True)
    failed = job_id_of(upload(client, auth, series, original, HEADERS))
    assert wait_for_job(client, auth, failed)["status"] == "COMPLETED_WITH_ERRORS"
    (error,) = all_row_errors(client, auth, failed)
    assert error["errorCode"] == 702
    assert error["fields"] == cells  # the raw cells are kept, leading CR / tab included

    header, row = report(client, auth, failed)
    assert header[:7] == HEADER_ROW
    # Each cell led by CR or tab gets its `'`; the date, mobile and coupon are left alone.
    assert row[:7] == [cells[0], "'" + cells[1], MOBILE, "UNKNOWN", *("'" + c for c in cells[4:])]
    assert row[7:9] == ["2", "702"]

    # Uploaded again as it is, the report fails the same way, with the same report row.
    unchanged = write_rows(tmp_path / "unchanged.csv", [header, row])
    again = job_id_of(upload(client, auth, series, unchanged, HEADERS))
    wait_for_job(client, auth, again)
    assert [e["errorCode"] for e in all_row_errors(client, auth, again)] == [702]
    assert report(client, auth, again)[1][:9] == row[:9]

    # Fixed (the coupon made known) and uploaded again: the quote goes, the trim applies.
    row[3] = "GOOD"
    fixed = job_id_of(
        upload(client, auth, series, write_rows(tmp_path / "fixed.csv", [header, row]), HEADERS)
    )
    assert wait_for_job(client, auth, fixed)["progress"]["rowsSucceeded"] == 1
    via_report = tuple(stored_redemption(fixed))
    assert via_report == ("T1", "B-1", "=1+1", f"note{lead}kept", "GOOD")

    # Exactly what the original row stores when uploaded directly, with its coupon fixed.
    cells[3] = "GOOD"
    cells[0] = str(SAMPLE_MS + 1)  # another redemption, not a duplicate of the one above
    direct_file = write_rows(tmp_path / "direct.csv", [HEADER_ROW, cells], quote_all=True)
    direct = job_id_of(upload(client, auth, series, direct_file, HEADERS))
    assert wait_for_job(client, auth, direct)["progress"]["rowsSucceeded"] == 1
    assert tuple(stored_redemption(direct)) == via_report


@pytest.mark.usefixtures("worker")
@LEADS
def test_a_blank_cell_led_by_cr_or_tab_stays_blank_through_the_report(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path, lead: str
) -> None:
    # The till holds only a CR / tab: trimmed, it is empty and the row fails 802.
    cells = [str(SAMPLE_MS), lead, MOBILE, "GOOD", lead, "", lead]
    original = write_rows(tmp_path / "original.csv", [HEADER_ROW, cells], quote_all=True)
    failed = job_id_of(upload(client, auth, series, original, HEADERS))
    wait_for_job(client, auth, failed)
    assert [e["errorCode"] for e in all_row_errors(client, auth, failed)] == [802]
    header, row = report(client, auth, failed)
    assert row[1] == "'" + lead  # escaped as the contract says

    # The report uploaded again unchanged must fail the same way: nothing was fixed.
    unchanged = write_rows(tmp_path / "unchanged.csv", [header, row])
    again = job_id_of(upload(client, auth, series, unchanged, HEADERS))
    wait_for_job(client, auth, again)
    with admin_transaction() as session:
        redeemed = session.execute(
            text("SELECT till_id, bill_id, details FROM redemptions WHERE job_id = :j"),
            {"j": again},
        ).all()
    assert redeemed == []  # (the bug: one row, till_id "'", bill_id "'", details "'")
    assert [e["errorCode"] for e in all_row_errors(client, auth, again)] == [802]
