"""The upload form's max-error-rate field, in headless Chromium against a real API and worker.

The fixtures (Chromium, the API in a process of its own, the page) are tests/browser.py's; the
file is tests/webpage.py's shop: GOOD_ROWS rows that apply and 3 that fail, in one chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from tests.dbtools import admin_transaction
from tests.webpage import (
    GOOD_ROWS,
    choose_upload,
    jobs_of,
    playwright_expect,
    shop,
    sign_in,
    wait_for_end,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]  # its fixtures: page, phone, any_width
pytestmark = pytest.mark.timeout(300)  # a fresh machine first spends up to a minute on apt-get


def set_default(org_id: int, rate: float | None) -> None:
    with admin_transaction() as session:
        session.execute(
            text("UPDATE orgs SET default_max_error_rate = :r WHERE id = :o"),
            {"r": rate, "o": org_id},
        )


def stored(job_id: int) -> tuple[float | None, int]:
    """The job's max_error_rate and its redemptions."""
    with admin_transaction() as session:
        row = session.execute(
            text(
                "SELECT max_error_rate, (SELECT count(*) FROM redemptions WHERE job_id = :j)"
                " FROM upload_jobs WHERE id = :j"
            ),
            {"j": job_id},
        ).one()
    return row[0], int(row[1])


def test_the_field_holds_the_org_default_and_a_rate_typed_there_stops_the_upload(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    set_default(org_id, 0.5)
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)

    field = page.get_by_label("Max error rate")
    expect(field).to_have_value("50%")
    expect(page.locator("#max-error-rate-help")).to_contain_text("the org's default, 50%")

    choose_upload(page, series, path)
    field.fill("5%")  # 3 failed rows of 23 are 13%
    page.get_by_role("button", name="Upload").click()
    wait_for_end(page, "FAILED")

    expect(page.locator("#job")).to_contain_text("stopped by maxErrorRate 5% before anything")
    (job,) = jobs_of(base_url, key)
    assert job["status"] == "FAILED"
    assert stored(job["jobId"]) == (0.05, 0)
    # The field keeps its value for the next upload, as the series and identifiers do.
    expect(field).to_have_value("5%")


def test_an_org_without_a_default_shows_no_guard_and_an_empty_field_sends_none(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)

    field = page.get_by_label("Max error rate")
    expect(field).to_have_value("")
    expect(page.locator("#max-error-rate-help")).to_contain_text("no guard")

    choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()
    wait_for_end(page, "COMPLETED_WITH_ERRORS")

    (job,) = jobs_of(base_url, key)
    assert stored(job["jobId"]) == (None, GOOD_ROWS)


def test_a_rate_the_service_cannot_read_is_refused_naming_the_field(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)
    choose_upload(page, series, path)

    page.get_by_label("Max error rate").fill("5")
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("#upload-error")).to_contain_text("maxErrorRate")
    assert jobs_of(base_url, key) == []
