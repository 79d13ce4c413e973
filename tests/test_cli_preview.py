"""`bulkredeem upload --preview` against a live API: what the service reads, nothing uploaded.

The live API, the CLI runner and the shop (a series, a customer, three issued coupons) are
tests/test_cli_client.py's fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import Result

from tests import test_cli_client
from tests.factories import SAMPLE_MS, write_csv
from tests.foreign_files import png, xlsx
from tests.test_cli_client import INDEX_HEADERS, Cli, Shop, upload_args

pytestmark = pytest.mark.timeout(120)

# The client commands' fixtures (the live API, the CLI runner, the shop), shared, not copied.
service = test_cli_client.service
cli = test_cli_client.cli
shop = test_cli_client.shop

HEADER = ["Redeemed Date In Millis", "Redeemed At", "Mobile", "Coupon Code", "Bill Id"]


def redemptions(shop: Shop, tmp_path: Path) -> Path:
    """Two good rows, an unknown coupon, a bad date, then a good row: five records."""
    rows: list[list[object]] = [
        [SAMPLE_MS, "T1", shop.mobile, "GOOD1", "B1"],
        [SAMPLE_MS + 1, "T1", shop.mobile, "GOOD2", "B2"],
        [SAMPLE_MS + 2, "T1", shop.mobile, "NOSUCH", "B3"],
        ["yesterday", "T1", shop.mobile, "GOOD3", "B4"],
        [SAMPLE_MS + 3, "T1", shop.mobile, "GOOD3", "B5"],
    ]
    return write_csv(tmp_path / "redeemed.csv", HEADER, rows)


def nothing_uploaded(cli: Cli, shop: Shop) -> None:
    listed = cli.api("GET", "/v1/jobs", params={"couponSeriesId": shop.series_id}).json()
    assert listed["items"] == []
    for code in shop.coupons:
        found = cli.api("GET", "/v1/coupons", params={"seriesId": shop.series_id, "code": code})
        assert found.status_code == 200, found.text
        assert found.json()["redemptionCount"] == 0


def test_preview_prints_the_files_shape_the_mapping_and_each_records_verdict_and_uploads_nothing(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    result = cli(*upload_args(shop, redemptions(shop, tmp_path), "--preview"))

    assert result.exit_code == 2, result.output  # a record would fail
    out = result.stdout
    for fact in ("format", "csv", "utf-8", "delimiter", "comma", "header row", "yes"):
        assert fact in out, out
    assert "Redeemed Date In Millis | Redeemed At | Mobile | Coupon Code | Bill Id" in out
    # The mapping the upload would send, by the header's names (core's rule), required marked.
    mapping = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert mapping["redeemedDateInMillis"][:2] == ["0", "Redeemed"]
    assert mapping["couponCode"][:2] == ["3", "Coupon"]
    assert mapping["billId"][:2] == ["4", "Bill"]
    assert mapping["mobile"][-1] == "yes"
    assert mapping["billId"][-1] != "yes"
    # The five records, as the service reads them, and each one's verdict.
    assert out.count("would apply") == 3
    assert "702 COUPON_NOT_FOUND" in out
    assert "729 INVALID_REDEMPTION_DATE" in out
    assert "couponCode: NOSUCH" in out
    assert "redeemedDateInMillis: yesterday" in out
    assert "2 of 5 records would fail; nothing uploaded" in result.stderr
    nothing_uploaded(cli, shop)


def test_preview_json_is_the_services_answer_as_it_came(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = redemptions(shop, tmp_path)

    result = cli(*upload_args(shop, path, "--preview", "--headers", INDEX_HEADERS, "--json"))

    assert result.exit_code == 2, result.output
    answer = cli.api(
        "POST",
        "/v1/uploads/preview",
        params={"couponSeriesId": shop.series_id},
        data={"customerIdentifier": "MOBILE", "couponIdentifier": "COUPON_CODE",
              "uploadHeaders": INDEX_HEADERS},
        files={"file": ("redeemed.csv", path.read_bytes(), "text/csv")},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert json.loads(result.stdout) == answer.json()
    assert [r["errorCode"] for r in answer.json()["records"]] == [None, None, 702, 729, None]
    nothing_uploaded(cli, shop)


def test_a_swapped_mapping_is_seen_in_the_preview_before_any_upload(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    swapped = '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 3, "couponCode": 2}'

    result = cli(*upload_args(shop, redemptions(shop, tmp_path), "--preview", "--headers", swapped))

    assert result.exit_code == 2, result.output
    assert "would apply" not in result.stdout
    assert f"couponCode: {shop.mobile}" in result.stdout
    assert "mobile: GOOD1" in result.stdout
    assert "5 of 5 records would fail" in result.stderr
    nothing_uploaded(cli, shop)


def preview_one_row(cli: Cli, shop: Shop, tmp_path: Path, header: list[str]) -> Result:
    """`upload --preview` of a file with this header and one good row."""
    path = write_csv(tmp_path / "one.csv", header, [[SAMPLE_MS, "T1", shop.mobile, "GOOD1"]])
    return cli(*upload_args(shop, path, "--preview"))


def test_a_clean_preview_exits_0(cli: Cli, shop: Shop, tmp_path: Path) -> None:
    header = ["redeemedDateInMillis", "redeemedAt", "mobile", "couponCode"]

    result = preview_one_row(cli, shop, tmp_path, header)

    assert result.exit_code == 0, result.output
    assert result.stdout.count("would apply") == 1
    assert "first record" in result.stdout
    assert "0 of 1 records would fail" in result.stderr


def test_a_header_the_cli_cannot_map_is_previewed_with_what_it_lacks(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    result = preview_one_row(cli, shop, tmp_path, ["when", "Till", "Mobile", "Coupon Code"])

    assert result.exit_code == 2, result.output
    assert "upload would refuse: no column of the header row maps to redeemedDateInMillis" in (
        result.stderr
    )
    assert "not judged: the mapping lacks redeemedDateInMillis; nothing uploaded" in result.stderr
    (lacking,) = [line for line in result.stdout.splitlines() if "not mapped" in line]
    assert lacking.split()[0] == "redeemedDateInMillis"
    assert "first record" in result.stdout
    assert "would apply" not in result.stdout
    nothing_uploaded(cli, shop)


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [("redeemed.xlsx", xlsx(), "an Excel workbook (XLSX)"), ("redeemed.png", png(), "a PNG image")],
    ids=["xlsx", "png"],
)
def test_a_file_that_is_not_csv_is_named_and_nothing_is_sent(
    cli: Cli, shop: Shop, tmp_path: Path, name: str, content: bytes, what: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = cli(*upload_args(shop, path, "--preview"))

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"bulkredeem: {path} is {what}"), result.stderr


def test_a_preview_cannot_wait_for_a_job(cli: Cli, shop: Shop, tmp_path: Path) -> None:
    result = cli(*upload_args(shop, redemptions(shop, tmp_path), "--preview", "--wait"))

    assert result.exit_code == 2, result.output
    assert "a preview makes no job to wait for" in result.output
    nothing_uploaded(cli, shop)
