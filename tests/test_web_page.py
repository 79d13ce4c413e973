"""The web page at `/`, end to end in headless Chromium against a real API and a real worker.

The API runs as a uvicorn process sharing the test session's database, Redis, queue and file
store, so that the session's Celery worker applies the jobs the page uploads. Chromium is
Debian's (`/usr/bin/chromium`), driven by Playwright's Python package; it is installed with
apt-get when missing, and the tests skip, saying why, only when that cannot be done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series, write_csv
from tests.processes import Process, service_env
from tests.processes import api as start_api

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.timeout(300)  # a fresh machine first spends up to a minute on apt-get

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/bulkredeem-page.png")
JOB_MS = 60_000  # how long the page may take to show a job's end
# The sample header, spelt as a person would: the page must map it by name.
HEADER = ["Redeemed Date In Millis", "Redeemed At", "Mobile", "coupon code", "Bill Id", "Notes"]
GOOD_ROWS = 20


def _install_chromium() -> str | None:
    """Installs Debian's chromium; the reason it could not, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(command)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {(done.stdout + done.stderr)[-500:]}"
    return None if CHROMIUM.exists() else "apt-get installed chromium, but not as /usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package")
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason is not None:
            pytest.skip(f"no Chromium at {CHROMIUM}: {reason}")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def base_url(
    database_url: str, worker: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The API over HTTP, in a uvicorn process of its own on the session's services."""
    api, url = start_api(service_env(), tmp_path_factory.mktemp("web") / "api.log")
    try:
        yield url
    finally:
        api.stop()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(
        base_url=base_url, accept_downloads=True, viewport={"width": 1280, "height": 800}
    )
    opened = context.new_page()
    crashes: list[str] = []
    opened.on("pageerror", lambda error: crashes.append(str(error)))
    opened.goto("/")
    yield opened
    context.close()
    assert crashes == [], f"the page's script threw: {crashes}"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _sign_in(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    _expect()(page.locator("#workspace")).to_be_visible()


def _shop(org_id: int, tmp_path: Path) -> tuple[int, Path]:
    """A series with GOOD_ROWS issued coupons, and a file redeeming them plus three bad rows."""
    series = create_series(org_id, name="Diwali 2020")
    create_series(org_id, name="A newer series")  # listed first: the test must pick
    rows: list[list[object]] = []
    for i in range(GOOD_ROWS):
        mobile = f"98{i:08d}"
        customer = create_customer(org_id, mobile=mobile)
        create_coupon(org_id, series, f"WEB{i:04d}", issued_to=customer)
        rows.append([SAMPLE_MS + i, "T1", mobile, f"WEB{i:04d}", f"B{i}", f"note {i}"])
    rows.insert(5, [SAMPLE_MS, "T1", "9800000001", "NOSUCHCOUPON", "B", "unknown coupon"])
    rows.insert(12, ["yesterday", "T1", "9800000002", "WEB0002", "B", "bad date"])
    rows.append([SAMPLE_MS, "T1", "9800000003", "ALSONOSUCH", "B", "unknown too"])
    return series, write_csv(tmp_path / "redeemed.csv", HEADER, rows)


def _choose_upload(page: Page, series: int, path: Path) -> None:
    page.get_by_label("Coupon series").select_option(str(series))
    page.get_by_label("Customers are named by").select_option("MOBILE")
    page.get_by_label("Coupons are named by").select_option("COUPON_CODE")
    page.get_by_label("File (CSV)").set_input_files(str(path))
    _expect()(page.locator("#mapping")).to_be_visible()


def _mapping(page: Page) -> dict[str, str]:
    mapped: dict[str, str] = page.eval_on_selector_all(
        "#mapping-rows select",
        "selects => Object.fromEntries(selects.map(s => [s.dataset.key, s.value]))",
    )
    return mapped


def _cells(page: Page, rows: str) -> list[list[str]]:
    cells: list[list[str]] = page.eval_on_selector_all(
        rows, "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    return cells


def _wait_for_end(page: Page, status: str) -> None:
    expect = _expect()
    expect(page.locator("#job-status")).to_have_text(status, timeout=JOB_MS)
    expect(page.locator("#job")).to_have_attribute("data-done", "true", timeout=JOB_MS)


def test_a_wrong_key_is_refused_with_a_clear_message(page: Page) -> None:
    _expect()(page.get_by_label("API key")).to_be_focused()
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()

    alert = page.locator("#sign-in-error")
    _expect()(alert).to_be_visible()
    _expect()(alert).to_contain_text("This API key was refused")
    _expect()(alert).to_contain_text("(401)")
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_sign_in_with_the_keyboard_alone_then_sign_out(page: Page, org: tuple[int, str]) -> None:
    expect = _expect()
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
    expect = _expect()
    org_id, key = org
    series, path = _shop(org_id, tmp_path)
    _sign_in(page, key)
    expect(page.locator("#series option")).to_have_text(
        [f"A newer series (#{series + 1})", f"Diwali 2020 (#{series})"]
    )
    _choose_upload(page, series, path)
    expect(page.locator("#file-info")).to_contain_text("6 columns, comma-separated, with a header")

    # Every column's dropdown is labelled by its key.
    assert page.eval_on_selector_all(
        "#mapping-rows select", "selects => selects.map(s => s.labels[0].textContent)"
    )[0].startswith("redeemedDateInMillis when it was redeemed")
    assert page.eval_on_selector_all(
        "#mapping-rows select", "selects => selects.every(s => s.labels.length === 1)"
    )
    # Preselected by header name, case and spaces aside; "Notes" matches no key.
    assert _mapping(page) == {
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
    expect(page.locator("#upload-result")).to_contain_text("is queued")
    job_id = int(page.locator("#job").get_attribute("data-job-id") or 0)
    expect(page.locator("#job-title")).to_have_text(f"Job #{job_id}")

    _wait_for_end(page, "COMPLETED_WITH_ERRORS")
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

    assert _cells(page, "#summary-rows tr") == [
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
    expect(job_row).to_contain_text("redeemed.csv")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download errors CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"job-{job_id}-errors.csv"
    from_page = Path(download.path()).read_bytes()
    from_api = httpx.get(
        f"{base_url}/v1/jobs/{job_id}/errors.csv",
        headers={"Authorization": f"Bearer {key}"},
        trust_env=False,
    )
    assert from_api.status_code == 200
    assert from_page == from_api.content
    assert from_page.startswith(b"Redeemed Date In Millis,Redeemed At,Mobile,coupon code,")
    assert from_page.count(b"\r\n") == 4

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
    _sign_in(page, key)
    _choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()

    _wait_for_end(page, "COMPLETED_WITH_ERRORS")
    assert page.locator("#job").get_attribute("data-transport") == "polling"
    _expect()(page.get_by_label("Progress")).to_have_attribute("aria-valuenow", "100")
    assert _cells(page, "#summary-rows tr") == [["790", "DUPLICATE_REDEMPTION", "1"]]


def test_the_page_and_its_files_are_served_outside_the_openapi_document(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    for name in ("index.html", "..%2Froutes%2Fui.py", "nothing.js"):
        assert client.get(f"/static/{name}").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/static")]
