"""The web page at `/`, end to end in headless Chromium against a real API and a real worker.

The fixtures (Chromium, the API in a process of its own, the page) are tests/browser.py's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series, write_csv
from tests.webpage import (
    GOOD_ROWS,
    cells,
    choose_upload,
    jobs_of,
    mapping_of,
    playwright_expect,
    shop,
    sign_in,
    wait_for_end,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Response

pytest_plugins = ["tests.browser"]  # its fixtures: page, phone, any_width
pytestmark = pytest.mark.timeout(300)  # a fresh machine first spends up to a minute on apt-get

SCREENSHOT = Path("/tmp/bulkredeem-page.png")


# The banner right after an upload, or already at its job's end: a small job may end before
# the page is looked at, and the banner follows it there.
UPLOADED = re.compile(r"Uploaded redeemed\.csv: job #\d+|Job #\d+ \(redeemed\.csv\) ended ")


def test_a_wrong_key_is_refused_with_a_clear_message(page: Page) -> None:
    playwright_expect()(page.get_by_label("API key")).to_be_focused()
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()

    alert = page.locator("#sign-in-error")
    playwright_expect()(alert).to_be_visible()
    playwright_expect()(alert).to_contain_text("This API key was refused")
    playwright_expect()(alert).to_contain_text("(401)")
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_sign_in_with_the_keyboard_alone_then_sign_out(page: Page, org: tuple[int, str]) -> None:
    expect = playwright_expect()
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(org[1])
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("#workspace")).to_be_visible()
    expect(page.get_by_label("Coupon series")).to_be_focused()
    assert page.evaluate("sessionStorage.getItem('bulkredeem.apiKey')") == org[1]
    page.reload()  # the key stays for the tab's life
    expect(page.locator("#workspace")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#sign-in")).to_be_visible()
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_an_upload_with_bad_rows_shows_live_progress_its_errors_and_the_apis_report(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)
    expect(page.locator("#series option")).to_have_text(
        [f"A newer series (#{series + 1})", f"Diwali 2020 (#{series})"]
    )
    choose_upload(page, series, path)
    expect(page.locator("#file-info")).to_contain_text("6 columns, comma-separated, with a header")

    # Every column's dropdown is labelled by its key.
    assert page.eval_on_selector_all(
        "#mapping-rows select", "selects => selects.map(s => s.labels[0].textContent)"
    )[0].startswith("redeemedDateInMillis when it was redeemed")
    assert page.eval_on_selector_all(
        "#mapping-rows select", "selects => selects.every(s => s.labels.length === 1)"
    )
    # Preselected by header name, case and spaces aside; "Notes" matches no key.
    assert mapping_of(page) == {
        "redeemedDateInMillis": "0",
        "redeemedAt": "1",
        "mobile": "2",
        "externalId": "",
        "email": "",
        "userId": "",
        "couponId": "",
        "couponCode": "3",
        "billId": "4",
        "billNumber": "",
        "details": "",
    }
    # Two keys on one column: the API's error envelope is shown, message and field.
    page.locator("#map-billNumber").select_option(label="5: Bill Id")
    page.get_by_role("button", name="Upload").click()
    refused = page.locator("#upload-error")
    expect(refused).to_contain_text("(400)")
    expect(refused).to_contain_text("uploadHeaders: uploadHeaders maps")
    page.locator("#map-billNumber").select_option(label="not mapped")
    page.locator("#map-details").select_option(label="6: Notes")
    page.get_by_label("Details (optional)").fill("till upload, web page")

    page.get_by_role("button", name="Upload").click()
    expect(refused).to_be_hidden()
    banner = page.locator("#upload-result")
    expect(banner).to_contain_text(UPLOADED)
    job_id = int(page.locator("#job").get_attribute("data-job-id") or 0)
    expect(page.locator("#job-title")).to_have_text(f"Job #{job_id}")

    wait_for_end(page, "COMPLETED_WITH_ERRORS")
    # The banner followed the job to its end: it no longer says it is queued.
    expect(banner).to_have_text(
        f"Job #{job_id} (redeemed.csv) ended COMPLETED_WITH_ERRORS: "
        f"{GOOD_ROWS} rows succeeded, 3 failed."
    )
    # A whole number of rows per second, grouped as the locale groups: "27,008", not "27,008.2".
    expect(page.locator("#job-rate")).to_have_text(re.compile(r"^(-|\d{1,3}(,\d{3})*)$"))
    bar = page.get_by_label("Progress")
    assert bar.evaluate("bar => bar.value") == 100
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#job-percent")).to_have_text("100%")
    expect(page.locator("#job-processed")).to_have_text(str(GOOD_ROWS + 3))
    expect(page.locator("#job-succeeded")).to_have_text(str(GOOD_ROWS))
    expect(page.locator("#job-failed")).to_have_text("3")
    expect(page.locator("#announcer")).to_contain_text(f"Job {job_id} ended COMPLETED_WITH_ERRORS")
    expect(page.locator("#job-cancel")).to_be_disabled()
    # The live view came from the event stream, not from the polling fallback.
    assert page.locator("#job").get_attribute("data-transport") == "sse"
    assert int(page.locator("#job").get_attribute("data-sse-events") or 0) >= 1

    assert cells(page, "#summary-rows tr") == [
        ["702", "COUPON_NOT_FOUND", "2"],
        ["729", "INVALID_REDEMPTION_DATE", "1"],
    ]
    failed = page.locator("#row-errors-rows tr")
    expect(failed).to_have_count(3)
    # The header is row 1: the unknown coupon was the 6th record, the bad date the 14th.
    assert [row.locator("td").nth(0).inner_text() for row in failed.all()] == ["7", "14", "24"]
    assert failed.nth(0).locator("td").nth(1).inner_text() == "702"
    assert failed.nth(1).locator("td").nth(2).inner_text() == "INVALID_REDEMPTION_DATE"
    expect(failed.nth(1).locator("td.cells")).to_contain_text("yesterday")

    job_row = page.locator(f'#jobs-rows tr[data-job-id="{job_id}"]')
    expect(job_row.locator("td.status")).to_have_text("COMPLETED_WITH_ERRORS")
    expect(job_row.locator("td.failed")).to_have_text("3")
    expect(job_row.locator("td.file")).to_have_text("redeemed.csv")
    expect(job_row.locator("td.series")).to_have_text(f"Diwali 2020 (#{series})")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download errors CSV").click()
    download = download_info.value
    from_api = httpx.get(
        f"{base_url}/v1/jobs/{job_id}/errors.csv",
        headers={"Authorization": f"Bearer {key}"},
        trust_env=False,
    )
    assert from_api.status_code == 200
    # Saved under the API's name for it, not one the page made up.
    assert from_api.headers["content-disposition"] == (
        f'attachment; filename="redeemed-errors-{job_id}.csv"'
    )
    assert download.suggested_filename == f"redeemed-errors-{job_id}.csv"
    from_page = Path(download.path()).read_bytes()
    assert from_page == from_api.content
    assert from_page.startswith(b"Redeemed Date In Millis,Redeemed At,Mobile,coupon code,")
    assert from_page.count(b"\r\n") == 4

    # The applied rows' report, the same way: the API's bytes under the API's name.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download applied rows CSV").click()
    applied = httpx.get(
        f"{base_url}/v1/jobs/{job_id}/successes.csv",
        headers={"Authorization": f"Bearer {key}"},
        trust_env=False,
    )
    assert applied.status_code == 200
    assert download_info.value.suggested_filename == f"redeemed-successes-{job_id}.csv"
    assert Path(download_info.value.path()).read_bytes() == applied.content
    assert applied.content.count(b"\r\n") == GOOD_ROWS + 1

    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_without_the_event_stream_the_page_polls_until_the_job_ends(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    org_id, key = org
    series = create_series(org_id, name="polled")
    customer = create_customer(org_id, mobile="9700000000")
    create_coupon(org_id, series, "POLL1", issued_to=customer)
    path = write_csv(
        tmp_path / "polled.csv",
        ["redeemedDateInMillis", "redeemedAt", "mobile", "couponCode"],
        [[SAMPLE_MS, "T", "9700000000", "POLL1"], [SAMPLE_MS, "T", "9700000000", "POLL1"]],
    )
    page.route("**/v1/jobs/*/events", lambda route: route.abort())
    sign_in(page, key)
    choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()

    wait_for_end(page, "COMPLETED_WITH_ERRORS")
    assert page.locator("#job").get_attribute("data-transport") == "polling"
    playwright_expect()(page.get_by_label("Progress")).to_have_attribute("aria-valuenow", "100")
    assert cells(page, "#summary-rows tr") == [["790", "DUPLICATE_REDEMPTION", "1"]]


def test_the_page_and_its_files_are_served_outside_the_openapi_document(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    for name in ("index.html", "app.js", "..%2Froutes%2Fui.py", "nothing.js", "main.js.map"):
        assert client.get(f"/static/{name}").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/static")]


def test_after_an_upload_the_form_holds_nothing_that_would_send_it_again(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)
    choose_upload(page, series, path)
    page.get_by_label("Details (optional)").fill("first and only")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-result")).to_contain_text(UPLOADED)

    # The file, its mapping and its details are gone; the series and identifiers stay.
    assert page.locator("#file").evaluate("input => input.files.length") == 0
    expect(page.locator("#mapping")).to_be_hidden()
    expect(page.get_by_label("Details (optional)")).to_have_value("")
    expect(page.locator("#file-info")).to_have_text("Pick a file to map its columns.")
    expect(page.get_by_label("Coupon series")).to_have_value(str(series))

    # One more click sends nothing: it asks for a file.
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-error")).to_have_text("Pick a CSV file.")
    wait_for_end(page, "COMPLETED_WITH_ERRORS")
    assert len(jobs_of(base_url, key)) == 1

    # The banner goes with the job it followed once that job leaves the view.
    expect(page.locator("#upload-result")).to_contain_text("ended COMPLETED_WITH_ERRORS")
    page.get_by_role("button", name="Close").click()
    expect(page.locator("#upload-result")).to_have_text("")


LOSE_FIRST_UPLOAD_ANSWER = """(() => {
  const realFetch = window.fetch;
  let lost = 0;
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    if (String(input).includes("/v1/jobs?couponSeriesId=") && lost === 0) {
      lost += 1;
      await response.arrayBuffer();
      document.documentElement.dataset.lostAnswers = String(lost);
      throw new TypeError("Failed to fetch");
    }
    return response;
  };
})();"""


def test_an_upload_sent_again_after_its_answer_was_lost_makes_one_job(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    # The request reaches the real service, which makes the job; its answer never reaches the
    # page. (Playwright's own routing cannot forward a file's bytes, so the page's fetch is
    # wrapped instead, before the page's modules load.)
    page.add_init_script(LOSE_FIRST_UPLOAD_ANSWER)
    page.reload()
    sign_in(page, key)
    choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#upload-error")).to_contain_text("The service cannot be reached.")
    expect(page.locator("html")).to_have_attribute("data-lost-answers", "1")
    made = jobs_of(base_url, key)
    assert len(made) == 1

    # The same form sent again: the service answers with the job the lost answer named (which
    # the worker may have finished meanwhile).
    page.get_by_role("button", name="Upload").click()
    job_id = made[0]["jobId"]
    expect(page.locator("#job")).to_have_attribute("data-job-id", str(job_id))
    expect(page.locator("#upload-result")).to_contain_text(
        re.compile(rf"(Uploaded redeemed\.csv: job|Job) #{job_id}\b")
    )
    wait_for_end(page, "COMPLETED_WITH_ERRORS")
    assert [job["jobId"] for job in jobs_of(base_url, key)] == [made[0]["jobId"]]


IMPORT = re.compile(r"""^\s*import\s[^;]*?\sfrom\s+"\./([\w-]+\.js)";""", re.MULTILINE | re.DOTALL)


def test_every_module_the_page_imports_is_served_as_javascript(client: TestClient) -> None:
    static = Path(__file__).resolve().parent.parent / "api" / "static"
    index = (static / "index.html").read_text()
    entry = re.findall(r'<script type="module" src="/static/([\w-]+\.js)"></script>', index)
    assert entry == ["main.js"]
    seen: set[str] = set()
    todo = list(entry)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200, name
        # A browser runs a module only when it comes as JavaScript (and nosniff holds it to that).
        assert answer.headers["content-type"] == "text/javascript; charset=utf-8", name
        assert answer.headers["x-content-type-options"] == "nosniff"
        todo.extend(IMPORT.findall(answer.text))
    # Every module in the folder is reached from the entry: none is dead, none is missed.
    assert seen == {path.name for path in static.glob("*.js")}
    assert len(seen) >= 10


def test_the_page_loads_its_modules_without_a_failed_request(page: Page) -> None:
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))

    def refused(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    page.on("response", refused)
    page.reload()
    playwright_expect()(page.get_by_label("API key")).to_be_focused()
    loaded = page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name.split('/').pop())"
    )
    assert failed == []
    assert "main.js" in loaded
    assert "upload.js" in loaded


HOLD_UPLOAD_ANSWER = """(() => {
  const realFetch = window.fetch;
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    if (String(input).includes("/v1/jobs?couponSeriesId=")) {
      document.documentElement.dataset.uploadHeld = "true";
      await new Promise((resolve) => { window.releaseUpload = resolve; });
    }
    return response;
  };
})();"""


def test_a_file_chosen_while_an_upload_is_on_its_way_stays_for_the_next_upload(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    # The upload's answer waits until the test lets it through.
    page.add_init_script(HOLD_UPLOAD_ANSWER)
    page.reload()
    sign_in(page, key)
    choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("html")).to_have_attribute("data-upload-held", "true")
    upload = page.get_by_role("button", name="Uploading…")
    expect(upload).to_be_disabled()

    following = write_csv(tmp_path / "next.csv", ["redeemedDateInMillis"], [[SAMPLE_MS]])
    page.get_by_label("File (CSV)").set_input_files(str(following))
    # Still one upload at a time: choosing a file does not offer a second one meanwhile.
    expect(upload).to_be_disabled()
    page.evaluate("window.releaseUpload()")

    expect(page.locator("#upload-result")).to_contain_text(UPLOADED)
    assert page.locator("#file").evaluate("input => input.files[0].name") == "next.csv"
    expect(page.locator("#file-info")).to_have_text(
        "next.csv: 1 column, comma-separated, with a header row."
    )
    expect(page.get_by_role("button", name="Upload")).to_be_enabled()
