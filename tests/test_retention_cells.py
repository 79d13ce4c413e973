"""Retention: a purged file takes its rows' raw cells with it; the rest of the report stays,
and says why the cells are gone."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from core import retention
from core.reports import REPORT_COLUMNS
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, all_row_errors, job_id_of, upload, wait_for_job


def age(job_id: int, days: int) -> None:
    """Make the job look as if it ended `days` ago."""
    with admin_transaction() as session:
        session.execute(
            text("UPDATE upload_jobs SET finished_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) - timedelta(days=days), "id": job_id},
        )


def stored_cells(job_id: int) -> list[tuple[int, int, str, list[str]]]:
    with admin_transaction() as session:
        rows = session.execute(
            text(
                "SELECT row_number, code, message, cells FROM job_row_errors"
                " WHERE job_id = :id ORDER BY row_number"
            ),
            {"id": job_id},
        ).all()
    return [(r.row_number, r.code, r.message, list(r.cells)) for r in rows]


def test_a_purged_file_takes_its_row_errors_cells_and_the_reports_say_so(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    worker: Any,
) -> None:
    series = create_series(org[0])
    rows = [(SAMPLE_MS, "T1", "9988776655", f"SECRET{i}") for i in range(3)]
    path = write_csv(tmp_path / "r.csv", ["date", "till", "mobile", "code"], rows)
    old = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    kept = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    for job in (old, kept):
        assert wait_for_job(client, auth, job)["status"] == "COMPLETED_WITH_ERRORS"
    before = stored_cells(old)
    assert [cells for *_, cells in before] == [list(map(str, row)) for row in rows]
    days = get_settings().file_retention_days
    age(old, days + 1)
    age(kept, days - 1)

    assert retention.purge_old_files() >= 1

    # Counts, codes, messages and row numbers stay; the customers' data goes.
    after = stored_cells(old)
    assert [(n, code, message) for n, code, message, _ in after] == [
        (n, code, message) for n, code, message, _ in before
    ]
    assert all(cells == [] for *_, cells in after)
    assert all(cells for *_, cells in stored_cells(kept))  # a job within its days keeps them
    document = client.get(f"/v1/jobs/{old}", headers=auth).json()
    assert (document["progress"]["rowsFailed"], document["errorSummary"][0]["count"]) == (3, 3)
    assert document["links"]["file"] is None

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    note = f"(the row's cells were deleted with the uploaded file on {today})"
    report = client.get(f"/v1/jobs/{old}/errors.csv", headers=auth)
    assert report.status_code == 200
    assert "SECRET" not in report.text
    header, *lines = list(csv.reader(io.StringIO(report.text)))
    assert header == ["date", "till", "mobile", "code", *REPORT_COLUMNS]
    assert [line[:4] for line in lines] == [["", "", "", ""]] * 3
    assert [line[4] for line in lines] == [str(n) for n, *_ in before]
    assert all(line[7].endswith(note) for line in lines), lines

    page = client.get(f"/v1/jobs/{old}/errors", headers=auth).json()
    assert page["cellsPurgedAt"] is not None
    assert [item["fields"] for item in page["items"]] == [[]] * 3
    assert all(item["errorMessage"].endswith(note) for item in page["items"])
    # The job kept within its days still shows its rows as they were.
    kept_items = all_row_errors(client, auth, kept)
    assert [item["fields"] for item in kept_items] == [list(map(str, row)) for row in rows]
    assert client.get(f"/v1/jobs/{kept}/errors", headers=auth).json()["cellsPurgedAt"] is None
    kept_report = client.get(f"/v1/jobs/{kept}/errors.csv", headers=auth).text
    assert "SECRET0" in kept_report and "deleted with the uploaded file" not in kept_report


def test_retention_passes_over_a_revert_which_has_no_file_of_its_own(
    org: tuple[int, str],
) -> None:
    from tests.factories import create_job
    from tests.test_jobs_api import revert_row

    series = create_series(org[0])
    imported = create_job(org[0], series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,1,X"])
    revert = revert_row(org[0], imported, "COMPLETED")
    with admin_transaction() as session:
        session.execute(
            text("UPDATE upload_jobs SET status = 'COMPLETED' WHERE id = :id"), {"id": imported}
        )
    days = get_settings().file_retention_days
    age(imported, days + 1)
    age(revert, days + 1)

    retention.purge_old_files()

    with admin_transaction() as session:
        purged = session.execute(
            text(
                "SELECT id, file_deleted_at IS NOT NULL FROM upload_jobs"
                " WHERE id = ANY(:ids) ORDER BY id"
            ),
            {"ids": [imported, revert]},
        ).all()
    assert [tuple(row) for row in purged] == [(imported, True), (revert, True)]
