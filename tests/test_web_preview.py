"""The web page's preview, in headless Chromium against a real API: before anything is uploaded,
the service says what the file is, suggests its columns, names the required ones for the chosen
identifiers, and judges the first records with the mapping as it stands.

The fixtures (Chromium, the API in a process of its own, the page) are tests/browser.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.foreign_files import png, xlsx
from tests.webpage import (
    cells,
    choose_upload,
    jobs_of,
    mapping_of,
    playwright_expect,
    shop,
    sign_in,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]  # its fixtures: page, phone, any_width
pytestmark = pytest.mark.timeout(300)  # a fresh machine first spends up to a minute on apt-get

# The file tests/webpage.py's shop() writes: its first five records all apply.
COLUMNS = ["Redeemed Date In Millis", "Redeemed At", "Mobile", "coupon code", "Bill Id", "Notes"]


def _marked_required(page: Page) -> set[str]:
    marked: list[str] = page.eval_on_selector_all(
        "#mapping-rows tr",
        "rows => rows.filter(r => !r.querySelector('.required').hidden)"
        ".map(r => r.querySelector('select').dataset.key)",
    )
    return set(marked)


def _preview_of(base_url: str, key: str, series: int, path: Path, **fields: str) -> dict[str, Any]:
    """The API's own answer for the file, to hold the page to it."""
    answer = httpx.post(
        f"{base_url}/v1/uploads/preview",
        params={"couponSeriesId": series},
        headers={"Authorization": f"Bearer {key}"},
        data={"customerIdentifier": "MOBILE", "couponIdentifier": "COUPON_CODE", **fields},
        files={"file": (path.name, path.read_bytes(), "text/csv")},
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# Chooses each (dropdown, option text) as a user does, a change event each, in one go.
SWAP = """(choices) => {
  for (const [id, text] of choices) {
    const select = document.getElementById(id);
    select.value = [...select.options].find((option) => option.text === text).value;
    select.dispatchEvent(new Event("change", { bubbles: true }));
  }
}"""


def _shop_file_chosen(page: Page, org: tuple[int, str], tmp_path: Path) -> tuple[int, Path]:
    """Signed in, the shop's series and its file chosen: the series' id and the file."""
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)
    choose_upload(page, series, path)
    return series, path


def test_a_chosen_file_is_mapped_as_the_service_suggests_and_its_records_are_judged(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    key = org[1]
    series, path = _shop_file_chosen(page, org, tmp_path)

    suggested = _preview_of(base_url, key, series, path)
    assert suggested["header"] == COLUMNS
    mapped = mapping_of(page)
    assert {k: int(v) for k, v in mapped.items() if v} == suggested["suggestedUploadHeaders"]
    # Header names as a person spells them, matched by core's rule; "Notes" matches no key.
    assert {k: v for k, v in mapped.items() if v} == {
        "redeemedDateInMillis": "0",
        "redeemedAt": "1",
        "mobile": "2",
        "couponCode": "3",
        "billId": "4",
    }
    assert _marked_required(page) == {"redeemedDateInMillis", "redeemedAt", "mobile", "couponCode"}

    # The first five records, each mapped key with its value, all of them fine.
    rows = page.locator("#preview-rows tr")
    expect(rows).to_have_count(5)
    head = cells(page, "#preview-head")[0]
    assert head == ["Row", *suggested["records"][0]["values"].keys(), "Code", "Name", "Message"]
    first = cells(page, "#preview-rows tr")[0]
    assert first[0] == "2"  # the header is row 1
    assert "9800000000" in first and "WEB0000" in first
    assert [row[-1] for row in cells(page, "#preview-rows tr")] == ["would apply"] * 5
    expect(page.locator("#preview-note")).to_have_text(
        "The first 5 records: 5 would apply, 0 would fail."
    )
    assert jobs_of(base_url, key) == []


def test_the_required_marks_follow_the_identifiers(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    expect = playwright_expect()
    _shop_file_chosen(page, org, tmp_path)
    before = mapping_of(page)

    page.get_by_label("Customers are named by").select_option("EMAIL")
    page.get_by_label("Coupons are named by").select_option("COUPON_ID")

    for newly in ("email", "couponId"):
        expect(page.locator(f"#mapping-rows tr:has(#map-{newly}) .required")).to_be_visible()
    assert _marked_required(page) == {"redeemedDateInMillis", "redeemedAt", "email", "couponId"}
    # The mapping as it stands lacks them: the service's refusal is shown in the records' place.
    expect(page.locator("#preview-error")).to_contain_text("(400)")
    expect(page.locator("#preview-table")).to_be_hidden()
    assert mapping_of(page) == before  # the choices made stay
    # Upload asks for the newly required columns, by the service's word, and sends nothing.
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-error")).to_have_text("Choose a column for email, couponId.")


def test_a_swapped_mapping_shows_each_records_row_error_before_upload(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    key = org[1]
    series, path = _shop_file_chosen(page, org, tmp_path)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/uploads/preview" in r.url else None)

    # The mobile's and the coupon code's columns swapped, the two changes in the same moment
    # (Playwright's own clicks may lie further apart than the page's pause on a busy machine).
    page.evaluate(SWAP, [["map-mobile", "4: coupon code"], ["map-couponCode", "3: Mobile"]])

    expect(page.locator("#preview-rows tr.fails")).to_have_count(5)
    swapped = {
        "redeemedDateInMillis": 0,
        "redeemedAt": 1,
        "mobile": 3,
        "couponCode": 2,
        "billId": 4,
    }
    judged = _preview_of(base_url, key, series, path, uploadHeaders=json.dumps(swapped))
    shown = cells(page, "#preview-rows tr")
    assert [row[-3:] for row in shown] == [
        [str(r["errorCode"]), r["errorName"], r["errorMessage"]] for r in judged["records"]
    ]
    assert all(row[-3] in {"701", "702", "805"} for row in shown), shown
    assert "WEB0000" in shown[0]  # now read as the mobile
    expect(page.locator("#preview-note")).to_have_text(
        "The first 5 records: 0 would apply, 5 would fail."
    )
    # Two changes in a row are previewed once they settle, not once each.
    assert len(asked) == 1, asked
    assert jobs_of(base_url, key) == []

    # Put back one click at a time, the records apply again.
    page.locator("#map-mobile").select_option(label="3: Mobile")
    page.locator("#map-couponCode").select_option(label="4: coupon code")
    expect(page.locator("#preview-rows tr.applies")).to_have_count(5)


def test_a_utf16_file_is_read_as_the_service_reads_it(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, _ = shop(org_id, tmp_path)
    path = tmp_path / "excel-unicode.txt"
    rows = [
        ["redeemedDateInMillis", "redeemedAt", "mobile", "couponCode"],
        ["1603128622000", "T1", "9800000000", "WEB0000"],
    ]
    text = "".join("\t".join(row) + "\r\n" for row in rows)
    path.write_bytes(text.encode("utf-16"))  # with its BOM, as Excel's "Unicode Text" saves it
    sign_in(page, key)
    choose_upload(page, series, path)

    expect(page.locator("#file-info")).to_have_text(
        "excel-unicode.txt: UTF-16-LE text, 4 columns, tab-separated, with a header row."
    )
    assert mapping_of(page)["couponCode"] == "3"
    assert cells(page, "#preview-rows tr")[0][-1] == "would apply"


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [("redeemed.xlsx", xlsx(), "an Excel workbook (XLSX)"), ("redeemed.png", png(), "a PNG image")],
    ids=["xlsx", "png"],
)
def test_a_file_that_is_not_csv_is_named_and_not_offered_for_upload(
    page: Page,
    org: tuple[int, str],
    base_url: str,
    tmp_path: Path,
    name: str,
    content: bytes,
    what: str,
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, _ = shop(org_id, tmp_path)
    path = tmp_path / name
    path.write_bytes(content)
    sign_in(page, key)
    page.get_by_label("Coupon series").select_option(str(series))
    page.get_by_label("File (CSV)").set_input_files(str(path))

    info = page.locator("#file-info")
    expect(info).to_contain_text(f"{name} is {what}")
    expect(info).to_contain_text("CSV")
    expect(info).to_have_class("help refused")
    expect(page.get_by_role("button", name="Upload")).to_be_disabled()
    assert page.locator("#mapping").is_hidden()
    assert page.locator("#preview").is_hidden()
    assert jobs_of(base_url, key) == []
