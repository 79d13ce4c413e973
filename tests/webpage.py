"""What the web page's tests do in the browser: sign in, upload, wait, read tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series, write_csv

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

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
WIDE: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 420, "height": 800}
JOB_MS = 60_000  # how long the page may take to show a job's end
# The sample header, spelt as a person would: the page must map it by name.
HEADER = ["Redeemed Date In Millis", "Redeemed At", "Mobile", "coupon code", "Bill Id", "Notes"]
GOOD_ROWS = 20


def open_page(browser: Browser, base_url: str, viewport: ViewportSize) -> Iterator[Page]:
    """The page at `/` in a fresh context; fails the test when the page's script threw."""
    # en-US so that the figures the tests read have the grouping they expect: "27,008".
    context = browser.new_context(
        base_url=base_url, accept_downloads=True, viewport=viewport, locale="en-US"
    )
    opened = context.new_page()
    crashes: list[str] = []
    opened.on("pageerror", lambda error: crashes.append(str(error)))
    opened.goto("/")
    yield opened
    context.close()
    assert crashes == [], f"the page's script threw: {crashes}"


def playwright_expect() -> Any:
    """Playwright's `expect`, imported late: without Playwright the fixtures skip, not fail."""
    from playwright.sync_api import expect

    return expect


def sign_in(page: Page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    playwright_expect()(page.locator("#workspace")).to_be_visible()


def shop(org_id: int, tmp_path: Path, file_name: str = "redeemed.csv") -> tuple[int, Path]:
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
    return series, write_csv(tmp_path / file_name, HEADER, rows)


def choose_upload(page: Page, series: int, path: Path) -> None:
    page.get_by_label("Coupon series").select_option(str(series))
    page.get_by_label("Customers are named by").select_option("MOBILE")
    page.get_by_label("Coupons are named by").select_option("COUPON_CODE")
    page.get_by_label("File (CSV)").set_input_files(str(path))
    playwright_expect()(page.locator("#mapping")).to_be_visible()


def mapping_of(page: Page) -> dict[str, str]:
    """Each key's dropdown and the column index chosen in it ("" when not mapped)."""
    mapped: dict[str, str] = page.eval_on_selector_all(
        "#mapping-rows select",
        "selects => Object.fromEntries(selects.map(s => [s.dataset.key, s.value]))",
    )
    return mapped


def jobs_of(base_url: str, key: str) -> list[dict[str, Any]]:
    """The org's jobs as the API lists them: what the page really made."""
    answer = httpx.get(
        f"{base_url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}, trust_env=False
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def cells(page: Page, rows: str) -> list[list[str]]:
    found: list[list[str]] = page.eval_on_selector_all(
        rows, "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    return found


def wait_for_end(page: Page, status: str) -> None:
    playwright_expect()(page.locator("#job-status")).to_have_text(status, timeout=JOB_MS)
    playwright_expect()(page.locator("#job")).to_have_attribute("data-done", "true", timeout=JOB_MS)
