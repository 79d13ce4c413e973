"""`bulkredeem org show|set` and `upload --max-error-rate`, against a live API and a real worker.

The service, the key's org and the shop come from tests/test_cli_client.py's fixtures: the
same uvicorn process on the test database, the session's Celery worker behind it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests import test_cli_client
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, write_csv
from tests.test_cli_client import Cli, Shop, upload_args

# test_cli_client's fixtures, for pytest to find here by name.
service = test_cli_client.service
cli = test_cli_client.cli
shop = test_cli_client.shop

pytestmark = pytest.mark.timeout(120)

INDEX_HEADERS = '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}'
# Mobile and coupon code swapped: every row a 805.
SWAPPED_HEADERS = '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 3, "couponCode": 2}'


def stored_rate(job_id: int) -> float | None:
    with admin_transaction() as session:
        rate = session.execute(
            text("SELECT max_error_rate FROM upload_jobs WHERE id = :j"), {"j": job_id}
        ).scalar_one()
    return None if rate is None else float(rate)


def test_org_set_changes_what_it_names_and_show_reads_it_back(cli: Cli) -> None:
    shown = cli("org", "show")
    assert shown.exit_code == 0, shown.output
    assert "none (no guard)" in shown.stdout

    result = cli(
        "org",
        "set",
        "--default-country-code",
        "+91",
        "--time-zone",
        "Asia/Kolkata",
        "--default-max-error-rate",
        "5%",
    )

    assert result.exit_code == 0, result.output
    assert "91" in result.stdout and "Asia/Kolkata" in result.stdout and "5%" in result.stdout
    expected = {"defaultCountryCode": "91", "timeZone": "Asia/Kolkata", "defaultMaxErrorRate": 0.05}
    assert cli.api("GET", "/v1/org").json() == expected

    cleared = cli("org", "set", "--time-zone", "")

    assert cleared.exit_code == 0, cleared.output
    assert cli.api("GET", "/v1/org").json() == {**expected, "timeZone": None}
    as_json = cli("org", "show", "--json")
    assert '"defaultMaxErrorRate": 0.05' in as_json.stdout


def test_org_set_refusals_are_one_line_naming_the_setting_and_change_nothing(cli: Cli) -> None:
    cli("org", "set", "--time-zone", "UTC")

    zone = cli("org", "set", "--time-zone", "Mars/Olympus")
    assert zone.exit_code == 1
    assert "timeZone 'Mars/Olympus' is not an IANA time zone name" in zone.stderr

    rate = cli("org", "set", "--default-max-error-rate", "5")
    assert rate.exit_code == 1
    assert "--default-max-error-rate must be a share from 0 to 1" in rate.stderr

    nothing = cli("org", "set")
    assert nothing.exit_code == 1
    assert "nothing to set" in nothing.stderr
    assert cli.api("GET", "/v1/org").json()["timeZone"] == "UTC"
    assert cli.api("GET", "/v1/org").json()["defaultMaxErrorRate"] is None


def test_upload_max_error_rate_is_said_before_and_stops_a_swapped_mapping(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    rows = [(SAMPLE_MS, "T1", shop.mobile, code) for code in shop.coupons]
    path = write_csv(tmp_path / "swapped.csv", None, rows)

    result = cli(
        *upload_args(shop, path, "--headers", SWAPPED_HEADERS, "--max-error-rate", "5%", "--wait")
    )

    assert "guard: the job stops if more than 5% of its rows fail (--max-error-rate)" in (
        result.stderr
    )
    assert result.exit_code == 1, result.output  # FAILED
    job_id = int(result.stdout.splitlines()[0])
    job = cli.job(job_id)
    assert job["status"] == "FAILED"
    assert "before anything was applied" in job["failureReason"]
    assert "before anything was applied" in result.output  # the outcome shows the reason
    assert stored_rate(job_id) == 0.05


def test_upload_without_the_flag_says_and_uses_the_org_default(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    cli("org", "set", "--default-max-error-rate", "0.5")
    path = write_csv(tmp_path / "good.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])

    result = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS, "--wait"))

    assert result.exit_code == 0, result.output
    assert "more than 50% of its rows fail (the org's defaultMaxErrorRate)" in result.stderr
    assert stored_rate(int(result.stdout.splitlines()[0])) == 0.5


def test_upload_with_no_rate_anywhere_says_there_is_no_guard(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "good.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])

    result = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS))

    assert result.exit_code == 0, result.output
    assert "guard: none" in result.stderr
    assert stored_rate(int(result.stdout.splitlines()[0])) is None


def test_an_ambiguous_rate_is_refused_before_anything_is_sent(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "good.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])

    result = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS, "--max-error-rate", "5"))

    assert result.exit_code == 1
    assert "--max-error-rate must be a share from 0 to 1 (0.05) or a percentage" in result.stderr
    assert cli.api("GET", "/v1/jobs").json()["items"] == []


def test_upload_preview_shows_the_guard_the_upload_would_have(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    cli("org", "set", "--default-max-error-rate", "10%")
    path = write_csv(tmp_path / "good.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])

    by_default = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS, "--preview"))
    by_flag = cli(
        *upload_args(shop, path, "--headers", INDEX_HEADERS, "--preview", "--max-error-rate", "1")
    )

    assert by_default.exit_code == 0, by_default.output
    assert "more than 10% of its rows fail (the org's defaultMaxErrorRate)" in by_default.stderr
    assert "more than 100% of its rows fail (--max-error-rate)" in by_flag.stderr
    assert cli.api("GET", "/v1/jobs").json()["items"] == []  # a preview makes no job
