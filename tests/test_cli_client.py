"""The `bulkredeem` client commands against a live API (uvicorn) and a real Celery worker.

The commands run in-process through Typer's CliRunner, but every one of them talks HTTP to a
real uvicorn serving the app on the test database, and the worker applies the uploads; the
outcomes are checked through the API. The service-down case runs the installed script.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from cli.client.files import read_header_row
from cli.client.headers import map_header_by_name
from cli.client.http import ClientError
from cli.client.render import full_time, short_time
from cli.embedded.common import free_port
from cli.main import app
from core.rows import CouponIdentifier, CustomerIdentifier
from tests.factories import (
    SAMPLE_MS,
    create_coupon,
    create_customer,
    create_job,
    create_series,
    write_csv,
)
from tests.foreign_files import FOREIGN, Foreign
from tests.processes import Process, service_env
from tests.processes import api as start_api

pytestmark = pytest.mark.timeout(120)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
INDEX_HEADERS = '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}'
runner = CliRunner()


@pytest.fixture(scope="module")
def service(
    database_url: str, worker: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real API process on the test database, Redis, queue and storage (the worker's)."""
    process, url = start_api(service_env(), tmp_path_factory.mktemp("api") / "api.log")
    try:
        yield url
    finally:
        process.stop()


@dataclass
class Cli:
    url: str
    key: str
    org_id: int

    def __call__(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        base: dict[str, str | None] = {
            "BULKREDEEM_URL": self.url,
            "BULKREDEEM_API_KEY": self.key,
            "COLUMNS": "160",
        }
        return runner.invoke(app, list(args), env={**base, **(env or {})})

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def job(self, job_id: int) -> dict[str, Any]:
        answer = self.api("GET", f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document


@pytest.fixture
def cli(service: str, org: tuple[int, str]) -> Cli:
    return Cli(url=service, key=org[1], org_id=org[0])


@dataclass
class Shop:
    series_id: int
    mobile: str
    coupons: dict[str, int]


@pytest.fixture
def shop(cli: Cli) -> Shop:
    """A series valid from 2020, one customer, three coupons issued to them."""
    series_id = create_series(cli.org_id, valid_from=datetime(2020, 1, 1, tzinfo=UTC))
    mobile = "9000000001"
    customer = create_customer(cli.org_id, mobile=mobile)
    coupons = {
        code: create_coupon(cli.org_id, series_id, code, issued_to=customer)
        for code in ("GOOD1", "GOOD2", "GOOD3")
    }
    return Shop(series_id, mobile, coupons)


def job_id_printed(result: Result) -> int:
    """The job id: what `upload` prints first on stdout, alone on its line."""
    first = result.stdout.splitlines()[0] if result.stdout else ""
    assert first.isdigit(), f"no job id first in:\n{result.output}"
    return int(first)


def printed(result: Result, pattern: str) -> str:
    match = re.search(pattern, result.stdout, re.MULTILINE)
    assert match, f"no {pattern!r} in:\n{result.output}"
    return match.group(1)


def upload_args(shop: Shop, path: Path, *extra: str) -> list[str]:
    return [
        "upload",
        str(path),
        "--series",
        str(shop.series_id),
        "--customer-identifier",
        "MOBILE",
        "--coupon-identifier",
        "COUPON_CODE",
        *extra,
    ]


# --- upload --wait ------------------------------------------------------------------------------


def test_upload_wait_with_bad_rows_exits_2_summarises_codes_and_errors_out_matches_the_api(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "mixed.csv",
        ["date", "till", "mobile", "code"],
        [
            (SAMPLE_MS, "T1", shop.mobile, "GOOD1"),
            (SAMPLE_MS, "T1", shop.mobile, "NOSUCHCODE"),  # 702
            ("yesterday", "T1", shop.mobile, "GOOD2"),  # 729
            (SAMPLE_MS, "T1", "9111111111", "GOOD3"),  # 701
            (SAMPLE_MS + 1, "T1", shop.mobile, "GOOD1"),  # 716, the same customer again
        ],
    )

    result = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS, "--wait"))

    assert result.exit_code == 2, result.output
    job_id = job_id_printed(result)
    job = cli.job(job_id)
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    assert (job["progress"]["rowsSucceeded"], job["progress"]["rowsFailed"]) == (1, 4)
    for item in job["errorSummary"]:  # each code of the job in the table, with its count
        row = rf"{item['code']}\s+\S*\s*{item['name']}\s+\S*\s*{item['count']}\b"
        assert re.search(row, result.stdout), result.stdout
    assert {item["code"] for item in job["errorSummary"]} == {701, 702, 716, 729}
    assert f"job {job_id} COMPLETED_WITH_ERRORS: 5 rows, 1 succeeded, 4 failed" in result.stdout
    assert "100%" in result.stderr and "rows/s" in result.stderr  # the bar's last frame

    out = tmp_path / "report" / "errors.csv"
    out.parent.mkdir()
    saved = cli("errors", str(job_id), "--out", str(out))

    assert saved.exit_code == 0, saved.output
    from_api = cli.api("GET", f"/v1/jobs/{job_id}/errors.csv")
    assert from_api.status_code == 200
    assert out.read_bytes() == from_api.content
    assert from_api.content.count(b"\r\n") == 5  # the header and four failed rows
    assert list(out.parent.iterdir()) == [out]  # no partial file left beside it


def test_upload_wait_of_a_clean_file_exits_0_and_redeems(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "clean.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD3")])
    headers = tmp_path / "headers.json"
    headers.write_text(INDEX_HEADERS)

    result = cli(
        *upload_args(shop, path, "--headers", f"@{headers}", "--details", "till 7", "--wait")
    )

    assert result.exit_code == 0, result.output
    job = cli.job(job_id_printed(result))
    assert job["status"] == "COMPLETED"
    assert job["details"] == "till 7"
    assert "1 succeeded, 0 failed" in result.stdout
    assert "errors of job" not in result.stdout
    coupon = cli.api("GET", f"/v1/coupons/{shop.coupons['GOOD3']}").json()
    assert coupon["redemptionCount"] == 1


def test_upload_without_wait_prints_the_job_id_at_once(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "one.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD2")])

    result = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip().isdigit()
    job_id = int(result.stdout)
    assert cli.job(job_id)["couponSeriesId"] == shop.series_id

    waited = cli("jobs", "wait", str(job_id))

    assert waited.exit_code == 0, waited.output
    assert f"job {job_id} COMPLETED" in waited.stdout


def test_dry_run_flag_reaches_the_service(cli: Cli, shop: Shop, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "dry.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])

    result = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS, "--dry-run"))

    # The service either runs a dry run, or (before it supports one) refuses the field by name.
    if result.exit_code == 0:
        assert cli.job(int(result.stdout))["dryRun"] is True
    else:
        assert result.exit_code == 1, result.output
        assert "dryRun" in result.stderr


# --- mapping by header name -----------------------------------------------------------------


def test_upload_without_headers_maps_the_header_row_by_name(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = tmp_path / "named.csv"
    path.write_text(
        "Bill Number;Coupon Code;Mobile No;Redeemed Date In Millis;Till\n"
        f"B-1;GOOD1;{shop.mobile};{SAMPLE_MS};T9\n"
    )

    result = cli(*upload_args(shop, path, "--wait"))

    assert result.exit_code == 0, result.output
    assert "couponCode='Coupon Code'" in result.stderr
    job = cli.job(job_id_printed(result))
    assert (job["status"], job["progress"]["rowsSucceeded"]) == ("COMPLETED", 1)
    redemptions = cli.api("GET", f"/v1/coupons/{shop.coupons['GOOD1']}").json()["redemptions"]
    assert [(r["tillId"], r["billNumber"]) for r in redemptions] == [("T9", "B-1")]


def test_a_file_whose_header_cannot_be_mapped_asks_for_headers_and_uploads_nothing(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    headerless = write_csv(tmp_path / "bare.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])
    no_till = write_csv(tmp_path / "notill.csv", ["date", "mobile", "coupon code"], [])

    for path, says in ((headerless, "not a header row"), (no_till, "redeemedAt")):
        result = cli(*upload_args(shop, path))

        assert result.exit_code == 1, result.output
        assert says in result.stderr
        assert "--headers" in result.stderr
        assert "Traceback" not in result.output
    listed = cli.api("GET", "/v1/jobs", params={"couponSeriesId": shop.series_id}).json()
    assert listed["items"] == []


def test_header_row_is_read_from_the_first_bytes_with_bom_quotes_and_tabs(tmp_path: Path) -> None:
    path = tmp_path / "tabs.csv"
    path.write_bytes(
        b'\xef\xbb\xbf"redeemed date\tin millis"\tredeemedAt\tEMAIL\tcouponId\tnotes\n1\t2\t3\t4\n'
    )

    header = read_header_row(path)

    assert header == ["redeemed date\tin millis", "redeemedAt", "EMAIL", "couponId", "notes"]
    assert map_header_by_name(header, CustomerIdentifier.EMAIL, CouponIdentifier.COUPON_ID) == {
        "redeemedDateInMillis": "redeemed date\tin millis",
        "redeemedAt": "redeemedAt",
        "email": "EMAIL",
        "couponId": "couponId",
    }
    sample2 = read_header_row(EXAMPLES / "sample2.csv")
    assert map_header_by_name(sample2, CustomerIdentifier.MOBILE, CouponIdentifier.COUPON_CODE) == {
        "redeemedDateInMillis": "redeemed date in millis",
        "redeemedAt": "redeemed at",
        "mobile": "mobile",
        "couponCode": "coupon code",
        "billId": "bill id",
        "billNumber": "bill number",
        "details": "details",
    }


def test_header_names_match_by_the_services_rule_case_and_spaces_only() -> None:
    """The CLI asks core (core/headers.py), as the API does: `Coupon Code`, `COUPON_CODE` and
    `coupon-code` are the couponCode column; `Coupon/Code` or `redeemed date,in millis` are not
    (the CLI's own rule, before, dropped every character that was not a letter or digit)."""
    snake = ["Redeemed_Date_In_Millis", "TILL_ID", "Mobile-No", "COUPON_CODE", "bill  NUMBER"]
    assert map_header_by_name(snake, CustomerIdentifier.MOBILE, CouponIdentifier.COUPON_CODE) == {
        "redeemedDateInMillis": "Redeemed_Date_In_Millis",
        "redeemedAt": "TILL_ID",
        "mobile": "Mobile-No",
        "couponCode": "COUPON_CODE",
        "billNumber": "bill  NUMBER",
    }
    for header, unmapped in (
        (["Redeemed_Date_In_Millis", "TILL_ID", "Mobile-No", "Coupon/Code"], "couponCode"),
        (
            ["redeemed date,in millis", "TILL_ID", "Mobile-No", "COUPON_CODE"],
            "redeemedDateInMillis",
        ),
    ):
        with pytest.raises(ClientError, match=f"no column of the header row maps to {unmapped} "):
            map_header_by_name(header, CustomerIdentifier.MOBILE, CouponIdentifier.COUPON_CODE)
    with pytest.raises(ClientError, match="two columns could be couponCode: 'Code' and 'code '"):
        map_header_by_name(
            ["date", "till", "mobile", "Code", "code "],
            CustomerIdentifier.MOBILE,
            CouponIdentifier.COUPON_CODE,
        )


# --- files that are not CSV -------------------------------------------------------------------


@pytest.mark.parametrize("foreign", FOREIGN, ids=lambda f: f.name)
def test_a_file_that_is_not_csv_is_refused_in_one_line_saying_what_it_is_and_nothing_is_sent(
    cli: Cli, shop: Shop, tmp_path: Path, foreign: Foreign
) -> None:
    content = foreign.build()
    path = tmp_path / foreign.name
    path.write_bytes(content)

    result = cli(*upload_args(shop, path))

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"bulkredeem: {path} is {foreign.format.human}"), line
    for word in foreign.words:
        assert word in line, line
    assert line.isprintable()  # not the file's bytes
    # The API's 415 for the same bytes says the same, of "the file".
    answer = cli.api(
        "POST",
        f"/v1/jobs?couponSeriesId={shop.series_id}",
        data={"customerIdentifier": "MOBILE", "couponIdentifier": "COUPON_CODE",
              "uploadHeaders": INDEX_HEADERS},
        files={"file": ("redeemed.csv", content, "text/csv")},
    )  # fmt: skip
    assert answer.status_code == 415, answer.text
    assert line == f"bulkredeem: {path}" + answer.json()["status"]["message"][len("the file") :]
    # Told by its bytes, not its name; refused before any connection, --headers or not.
    renamed = tmp_path / "redeemed.csv"
    renamed.write_bytes(content)
    offline: dict[str, str | None] = {"BULKREDEEM_URL": f"http://127.0.0.1:{free_port()}"}
    again = cli(*upload_args(shop, renamed, "--headers", INDEX_HEADERS), env=offline)
    assert again.exit_code == 1, again.output
    assert again.stderr.splitlines() == [
        f"bulkredeem: {renamed}" + line[len(f"bulkredeem: {path}") :]
    ]
    listed = cli.api("GET", "/v1/jobs", params={"couponSeriesId": shop.series_id}).json()
    assert listed["items"] == []


# --- jobs ---------------------------------------------------------------------------------------


def test_jobs_list_show_cancel_and_wait_on_a_queued_job(cli: Cli, shop: Shop) -> None:
    # Made in core and never enqueued: it stays QUEUED until cancelled.
    job_id = create_job(cli.org_id, shop.series_id, ["d,t,m,c", f"{SAMPLE_MS},T1,{shop.mobile},X"])

    listed = cli("jobs", "list", "--series", str(shop.series_id))
    shown = cli("jobs", "show", str(job_id))

    assert listed.exit_code == 0, listed.output
    assert re.search(rf"\b{job_id}\b.*\bQUEUED\b.*made-in-test\.csv", listed.stdout), listed.stdout
    assert shown.exit_code == 0, shown.output
    assert re.search(r"status\s+QUEUED", shown.stdout), shown.stdout

    cancelled = cli("jobs", "cancel", str(job_id))

    assert cancelled.exit_code == 0, cancelled.output
    assert f"job {job_id} CANCELLED" in cancelled.stdout
    assert cli.job(job_id)["status"] == "CANCELLED"
    again = cli("jobs", "cancel", str(job_id))
    assert again.exit_code == 1
    assert "the service answered 409" in again.stderr
    assert cli("jobs", "wait", str(job_id)).exit_code == 1  # CANCELLED is neither 0 nor 2
    as_json = cli("jobs", "show", str(job_id), "--json")
    assert json.loads(as_json.stdout) == cli.job(job_id)
    only_completed = cli("jobs", "list", "--status", "COMPLETED")
    assert only_completed.exit_code == 0, only_completed.output
    assert not re.search(rf"^\S*\s*{job_id}\b", only_completed.stdout, re.MULTILINE)


def fits_80_columns(result: Result) -> str:
    """Everything the command printed, checked to fit 80 columns with no cell cut."""
    for line in result.output.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}\n{result.output}"
        assert "…" not in line, result.output
    return result.output


def test_at_80_columns_upload_wait_and_the_jobs_commands_cut_nothing(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    narrow: dict[str, str | None] = {"COLUMNS": "80"}
    path = write_csv(
        tmp_path / "redemptions_2026-12-04_store-0042_full-export_after-the-sale.csv",
        ["date", "till", "mobile", "code"],
        [(SAMPLE_MS, "T1", shop.mobile, "GOOD1"), (SAMPLE_MS, "T1", shop.mobile, "NOSUCH")],
    )

    uploaded = cli(*upload_args(shop, path, "--headers", INDEX_HEADERS, "--wait"), env=narrow)

    assert uploaded.exit_code == 2, uploaded.output
    fits_80_columns(uploaded)
    job_id = job_id_printed(uploaded)
    assert re.search(
        rf"^job {job_id} COMPLETED_WITH_ERRORS .* 100%  ETA 0:00$", uploaded.stderr, re.M
    )
    assert re.search(r"^2 rows, 1 failed, [\d,-]+ rows/s$", uploaded.stderr, re.M)
    assert f"job {job_id} COMPLETED_WITH_ERRORS: 2 rows, 1 succeeded, 1 failed" in uploaded.stdout
    queued = create_job(cli.org_id, shop.series_id, ["d,t,m,c", f"{SAMPLE_MS},T1,{shop.mobile},X"])

    listed = cli("jobs", "list", "--series", str(shop.series_id), env=narrow)
    shown = cli("jobs", "show", str(job_id), env=narrow)

    assert listed.exit_code == 0, listed.output
    text = fits_80_columns(listed)
    for document in (cli.job(job_id), cli.job(queued)):
        # Each job's line holds its id, full status and counts, and its creation time, short.
        when = short_time(document["createdAt"])
        line = rf"^\s*{document['jobId']}\s+{shop.series_id}\s+{document['status']}\s+.*{when}"
        assert re.search(line, text, re.M), text
        assert "".join(document["fileName"].split()) in "".join(text.split())
    assert shown.exit_code == 0, shown.output
    text = fits_80_columns(shown)
    assert re.search(r"^status\s+COMPLETED_WITH_ERRORS\s*$", text, re.M), text
    assert re.search(rf"^created\s+{full_time(cli.job(job_id)['createdAt'])}\s*$", text, re.M), text
    # Scripts read the full values: --json gives the service's documents as they are.
    as_json = cli("jobs", "list", "--series", str(shop.series_id), "--json", env=narrow)
    assert as_json.exit_code == 0, as_json.output
    page = cli.api("GET", "/v1/jobs", params={"couponSeriesId": shop.series_id, "limit": 20})
    assert json.loads(as_json.stdout) == page.json()
    waited = cli("jobs", "wait", str(job_id), "--json", env=narrow)
    assert waited.exit_code == 2, waited.output
    assert json.loads(waited.stdout) == cli.job(job_id)


# --- series -------------------------------------------------------------------------------------


def test_series_create_sends_every_rule_and_show_reads_it_back(service: str, cli: Cli) -> None:
    # Configured by flags this time, not the environment.
    flags = ["--url", service, "--api-key", cli.key]
    env: dict[str, str | None] = {"BULKREDEEM_URL": None, "BULKREDEEM_API_KEY": None}
    created = cli(
        "series",
        "create",
        "--name",
        "spring",
        "--max-redemptions-per-coupon",
        "3",
        "--same-user-multiple-redeem",
        "--max-redemptions-per-customer",
        "5",
        "--valid-from",
        "2021-01-01T00:00:00",
        "--valid-till",
        "2021-12-31T23:59:59",
        "--any-user",
        "--allowed-till",
        "T1",
        "--allowed-till",
        "T2",
        *flags,
        env=env,
    )

    assert created.exit_code == 0, created.output
    series_id = int(created.stdout)
    series = cli.api("GET", f"/v1/coupon-series/{series_id}").json()
    assert {k: v for k, v in series.items() if k not in ("id", "createdAt")} == {
        "name": "spring",
        "maxRedemptionsPerCoupon": 3,
        "sameUserMultipleRedeem": True,
        "maxRedemptionsPerCustomer": 5,
        "validFrom": "2021-01-01T00:00:00Z",
        "validTill": "2021-12-31T23:59:59Z",
        "anyUser": True,
        "allowedTillIds": ["T1", "T2"],
    }
    shown = cli("series", "show", str(series_id), "--json", *flags, env=env)
    assert json.loads(shown.stdout) == series

    unlimited = cli("series", "create", "--name", "open", "--unlimited")
    assert unlimited.exit_code == 0, unlimited.output
    plain = cli("series", "show", unlimited.stdout.strip())
    assert plain.exit_code == 0, plain.output
    assert re.search(r"redemptions per coupon\s+unlimited", plain.stdout), plain.stdout
    assert re.search(r"allowed tills\s+any", plain.stdout), plain.stdout
    both = cli(
        "series", "create", "--name", "x", "--unlimited", "--max-redemptions-per-coupon", "2"
    )
    assert both.exit_code == 2  # a usage error: nothing was sent
    bad_date = cli("series", "create", "--name", "x", "--valid-from", "next tuesday")
    assert bad_date.exit_code == 1
    assert "validFrom" in bad_date.stderr
    assert "Traceback" not in bad_date.output


# --- demo ---------------------------------------------------------------------------------------


def test_demo_loads_the_demo_data_over_the_api_and_sample2_redeems_against_it(cli: Cli) -> None:
    loaded = cli("demo")

    assert loaded.exit_code == 0, loaded.output
    series_id = int(printed(loaded, r"^series id: (\d+)$"))
    user_id = int(printed(loaded, r"^customer userId (\d+), mobile 9988776655$"))
    series = cli.api("GET", f"/v1/coupon-series/{series_id}").json()
    assert (series["name"], series["validFrom"]) == ("demo", "2020-01-01T00:00:00Z")
    for code in ("DEMO23456", "ABCDEF1"):
        coupon = cli.api("GET", "/v1/coupons", params={"seriesId": series_id, "code": code}).json()
        assert coupon["issuedTo"] == {"userId": user_id}
        assert f"coupon id {coupon['couponId']}, code {code}" in loaded.stdout

    # What it says to try: sample 2, its columns mapped by their header names.
    args = shlex.split(printed(loaded, r"^try: bulkredeem (.+)$"))
    assert args[1] == "examples/sample2.csv"
    args[1] = str(EXAMPLES / "sample2.csv")
    redeemed = cli(*args)

    assert redeemed.exit_code == 0, redeemed.output
    assert cli.job(job_id_printed(redeemed))["progress"]["rowsSucceeded"] == 1
    coupon = cli.api("GET", "/v1/coupons", params={"seriesId": series_id, "code": "ABCDEF1"})
    assert coupon.json()["redemptionCount"] == 1


def test_demo_seed_still_seeds_the_database(cli: Cli) -> None:
    result = cli("demo", "seed")

    assert result.exit_code == 0, result.output
    assert re.search(r"^API key: br_\S+$", result.stdout, re.MULTILINE), result.stdout


# --- failures -----------------------------------------------------------------------------------


def test_service_down_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("bulkredeem")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sample = str(EXAMPLES / "sample2.csv")
    env = {**service_env(), "BULKREDEEM_URL": url, "BULKREDEEM_API_KEY": "br_whatever"}
    for args in (
        ["jobs", "list"],
        ["upload", sample, "--series", "1", "--customer-identifier", "MOBILE",
         "--coupon-identifier", "COUPON_CODE", "--headers", INDEX_HEADERS],
    ):  # fmt: skip
        done = subprocess.run(
            command + args, env=env, capture_output=True, text=True, timeout=60, check=False
        )

        assert done.returncode == 1, done
        assert done.stderr.strip().splitlines() == [
            f"bulkredeem: cannot reach the service at {url} (connection refused): "
            "start it (`make run`) or point BULKREDEEM_URL / --url at it"
        ]


def test_wrong_or_missing_key_is_a_clear_message_and_exit_1(cli: Cli) -> None:
    wrong = cli("jobs", "list", env={"BULKREDEEM_API_KEY": "br_not_a_key"})
    missing = cli("demo", env={"BULKREDEEM_API_KEY": None})

    assert wrong.exit_code == 1
    assert f"the service at {cli.url} refused the API key" in wrong.stderr
    assert "BULKREDEEM_API_KEY" in wrong.stderr
    assert missing.exit_code == 1
    assert "no API key: set BULKREDEEM_API_KEY or pass --api-key" in missing.stderr
    for result in (wrong, missing):
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_service_errors_show_the_envelope_message_and_its_fields(
    cli: Cli, shop: Shop, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "x.csv", None, [(SAMPLE_MS, "T1", shop.mobile, "GOOD1")])

    refused = cli(*upload_args(shop, path, "--headers", '{"mobile": 2, "couponCode": 3}'))
    unknown = cli("jobs", "show", "987654321")

    assert refused.exit_code == 1
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith("bulkredeem: the service answered 400: ")
    assert any(line.strip().startswith("uploadHeaders: ") for line in lines[1:]), lines
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("bulkredeem: the service answered 404: ")
    for result in (refused, unknown):
        assert "Traceback" not in result.output
