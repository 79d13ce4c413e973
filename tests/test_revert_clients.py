"""Reverting from the clients: `bulkredeem jobs revert` and the page's Revert button, each
against a real API process and the session's real worker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.processes import Process, service_env
from tests.processes import api as start_api
from tests.webpage import choose_upload, jobs_of, playwright_expect, shop, sign_in, wait_for_end

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]  # its fixtures: page, base_url
pytestmark = pytest.mark.timeout(180)
runner = CliRunner()


@pytest.fixture(scope="module")
def api_url(
    database_url: str, worker: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    process, url = start_api(service_env(), tmp_path_factory.mktemp("api") / "api.log")
    try:
        yield url
    finally:
        process.stop()


def test_the_cli_reverts_a_job_and_says_why_it_cannot_twice(
    api_url: str, org: tuple[int, str], tmp_path: Path
) -> None:
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    env = {"BULKREDEEM_URL": api_url, "BULKREDEEM_API_KEY": key, "COLUMNS": "160"}
    headers = '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}'
    uploaded = runner.invoke(
        app,
        [
            "upload",
            str(path),
            "--series",
            str(series),
            "--customer-identifier",
            "MOBILE",
            "--coupon-identifier",
            "COUPON_CODE",
            "--headers",
            headers,
            "--wait",
        ],
        env=env,
    )
    assert uploaded.exit_code == 2, uploaded.output  # some rows failed
    import_id = int(uploaded.stdout.splitlines()[0])

    reverted = runner.invoke(app, ["jobs", "revert", str(import_id), "--wait"], env=env)
    assert reverted.exit_code == 0, reverted.output
    found = re.search(rf"^job (\d+) reverts job {import_id}: QUEUED$", reverted.stdout, re.M)
    assert found, reverted.stdout
    revert_id = int(found.group(1))

    again = runner.invoke(app, ["jobs", "revert", str(import_id)], env=env)
    assert again.exit_code == 1
    assert "the service answered 409" in again.stderr
    assert f"already reverted by job {revert_id}" in again.stderr


def test_the_pages_revert_button_asks_first_then_follows_the_revert_to_its_end(
    page: Page, org: tuple[int, str], base_url: str, tmp_path: Path
) -> None:
    expect = playwright_expect()
    org_id, key = org
    series, path = shop(org_id, tmp_path)
    sign_in(page, key)
    choose_upload(page, series, path)
    page.get_by_role("button", name="Upload").click()
    wait_for_end(page, "COMPLETED_WITH_ERRORS")
    import_id = int(page.locator("#job").get_attribute("data-job-id") or 0)
    button = page.get_by_role("button", name="Revert job")
    expect(button).to_be_enabled()

    # Dismissed: nothing is asked of the API.
    questions: list[str] = []

    def dismiss(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    button.click()
    expect(page.locator("#job-title")).to_have_text(f"Job #{import_id}")
    assert questions and f"Revert job {import_id}?" in questions[0]
    assert [job["jobId"] for job in jobs_of(base_url, key)] == [import_id]

    page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    expect(page.locator("#job-title")).not_to_have_text(f"Job #{import_id}")
    revert_id = int(page.locator("#job").get_attribute("data-job-id") or 0)
    assert revert_id > import_id
    wait_for_end(page, "COMPLETED")
    expect(page.locator("#job-succeeded")).to_have_text("20")
    expect(page.locator("#announcer")).to_contain_text(f"Job {revert_id} ended COMPLETED")
    expect(button).to_be_hidden()  # a revert's own view offers none
