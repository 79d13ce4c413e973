"""What the CLI prints, at 80 columns and in local time: nothing cut, nothing lost."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cli.client.documents import Job
from cli.client.render import (
    error_table,
    full_time,
    job_table,
    jobs_lines,
    progress_view,
    short_time,
)

LONG_NAME = "redemptions_2026-12-04_store-0042_full-export_after-the-winter-sale.csv"


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local clock is Asia/Kolkata (UTC+05:30) for the test, whatever the machine's."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def a_job(**changes: Any) -> Job:
    """The widest job the service makes: ids of 7 digits, the row limit, the longest status."""
    document: dict[str, Any] = {
        "jobId": 9_999_999,
        "couponSeriesId": 9_999_999,
        "status": "COMPLETED_WITH_ERRORS",
        "fileName": LONG_NAME,
        "dryRun": True,
        "createdAt": "2026-12-04T15:43:05.123456Z",
        "finishedAt": "2026-12-04T16:01:00Z",
        "progress": {
            "percent": 100.0,
            "rowsProcessed": 10_000_000,
            "rowsSucceeded": 1,
            "rowsFailed": 9_999_999,
            "rowsPerSecond": 1_234_567.8,
            "etaSeconds": 0,
        },
        "errorSummary": [
            {"code": 716, "name": "SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED", "count": 9_999_999}
        ],
        "failureReason": "more than 10% of the rows failed (maxErrorRate 10): stopped after "
        "chunk 1; the rows applied so far stay until a revert undoes them",
    }
    document.update(changes)
    return Job.from_json(document)


def rendered(renderable: object, width: int = 80) -> list[str]:
    sink = io.StringIO()
    Console(file=sink, width=width, highlight=False).print(renderable)
    return sink.getvalue().splitlines()


def squeezed(text: str) -> str:
    """Without its spaces and line ends: a value wrapped across lines reads whole again."""
    return "".join(text.split())


def assert_fits(lines: list[str], width: int = 80) -> None:
    assert lines
    for line in lines:
        assert len(line) <= width, f"{len(line)} columns: {line!r}"
        assert "…" not in line, line


def test_list_times_are_short_and_local(local_zone: None) -> None:
    now = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)  # 04:30 on the 5th in Kolkata

    assert short_time("2026-12-04T21:13:05Z", now) == "02:43:05"  # the 5th there too: today
    assert short_time("2026-12-04T15:43:05.5Z", now) == "12-04 21:13"
    assert short_time("2025-06-30T23:00:00+00:00", now) == "2025-07-01"
    assert short_time(None, now) == "-"
    assert short_time("not a time", now) == "not a time"  # shown as sent, never dropped
    assert full_time("2026-12-04T15:43:05.123456Z") == "2026-12-04 21:13:05 IST"


def test_jobs_list_fits_80_columns_with_the_widest_jobs_and_keeps_every_value(
    local_zone: None,
) -> None:
    jobs = [a_job(), a_job(jobId=7, status="QUEUED", dryRun=False, fileName="a.csv")]
    now = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)

    lines = jobs_lines(jobs, 80, now)

    assert_fits(lines)
    text = "\n".join(lines)
    for value in ("9,999,999", "10,000,000", "COMPLETED_WITH_ERRORS", "QUEUED", "12-04 21:13"):
        assert value in text
    # Each file name, wrapped under its job if it must be, is there whole.
    assert squeezed(LONG_NAME + " (dry run)") in squeezed(text)
    assert "a.csv" in text


def test_jobs_list_is_one_line_a_job_when_the_names_fit() -> None:
    small = {"percent": 100.0, "rowsProcessed": 5000, "rowsFailed": 4}
    one = a_job(jobId=12, couponSeriesId=3, fileName="redeemed.csv", dryRun=False, progress=small)
    jobs = [one, one]

    lines = jobs_lines(jobs, 80)

    assert_fits(lines)
    assert len(lines) == 3  # the header and a line for each
    assert lines[1].endswith("  redeemed.csv")
    assert len(jobs_lines([a_job()], 200)) == 2  # a wide terminal: the long name fits too


def test_no_jobs_is_the_header_alone() -> None:
    assert jobs_lines([], 80) == ["job  series  status  rows  failed  created  file"]


def test_jobs_show_and_its_errors_fit_80_columns(local_zone: None) -> None:
    job = a_job()

    lines = rendered(job_table(job)) + rendered(error_table(job))

    assert_fits(lines)
    text = "\n".join(lines)
    assert "2026-12-04 21:13:05 IST" in text
    assert "SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED" in text
    assert LONG_NAME in squeezed(text)
    assert "revert undoes them" in text  # the reason wraps; its end is still there


@pytest.mark.parametrize(
    "job",
    [
        a_job(),
        a_job(
            status="RUNNING",
            progress={"percent": 42.0, "rowsProcessed": 4_200_000, "rowsFailed": 3,
                      "rowsPerSecond": 27_008.2, "etaSeconds": 3725},
        ),
    ],
    ids=["ended", "running"],
)  # fmt: skip
def test_the_progress_lines_fit_80_columns(job: Job) -> None:
    lines = rendered(progress_view(job.job_id, job))

    assert_fits(lines)
    text = "\n".join(lines)
    assert f"job {job.job_id} {job.status}" in text
    assert f"{job.progress.percent:.0f}%" in text
    assert "ETA " + ("0:00" if job.finished else "1:02:05") in text
    assert f"{job.progress.rows_processed:,} rows" in text
    assert "rows/s" in text


def test_the_hint_to_fetch_failed_rows_names_the_command_as_it_was_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cli.client.render import program

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "bulkredeem").write_text("#!/bin/sh\n")
    (venv_bin / "bulkredeem").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv not activated
    monkeypatch.setattr(sys, "argv", [".venv/bin/bulkredeem", "upload"])
    assert program() == ".venv/bin/bulkredeem"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")  # activated: the bare name works
    assert program() == "bulkredeem"
