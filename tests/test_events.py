"""GET /v1/jobs/{id}/events: Server-Sent Events of a job's progress, against a real worker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import get_settings
from tests.factories import (
    SAMPLE_MS,
    create_job,
    create_series,
    redeemable_file,
    write_csv,
)
from tests.helpers import MOBILE_HEADERS, job_id_of, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")


def read_events(client: TestClient, auth: dict[str, str], job: int) -> list[tuple[str, Any]]:
    """Every event of the stream, in order, until the server closes it."""
    events: list[tuple[str, Any]] = []
    name, data = "message", ""
    with client.stream("GET", f"/v1/jobs/{job}/events", headers=auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif line == "" and data:
                events.append((name, json.loads(data)))
                name, data = "message", ""
    return events


def test_events_carry_progress_at_each_chunk_and_end_with_the_final_document(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    rows = 80_000
    base = 7_000_000_000 + org_id * 1_000_000
    path = redeemable_file(
        tmp_path / "events.csv", database_url, org_id, series, rows, mobile_base=base
    )
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    events = read_events(client, auth, job)

    names = [name for name, _ in events]
    assert names[-1] == "end" and set(names[:-1]) <= {"job"}, names
    final = events[-1][1]
    assert final["jobId"] == job and final["status"] == "COMPLETED"
    assert final["progress"]["rowsSucceeded"] == rows
    assert final == client.get(f"/v1/jobs/{job}", headers=auth).json()
    processed = [doc["progress"]["rowsProcessed"] for name, doc in events if name == "job"]
    # The stream follows the chunks: the counts rise, and some are seen half-way.
    assert processed == sorted(processed)
    assert len({n for n in processed if 0 < n < rows}) >= 2, processed


def test_a_stream_opened_after_the_end_sends_only_the_end(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    path = write_csv(tmp_path / "one.csv", ["date", "till", "mobile", "code"], [(1, "T1", 1, "X")])
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    done = wait_for_job(client, auth, job)
    assert read_events(client, auth, job) == [("end", done)]


def test_events_of_an_unknown_job_are_404_before_any_stream(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = client.get("/v1/jobs/999999999/events", headers=auth)
    assert response.status_code == 404
    assert response.json()["status"]["code"] == 404


def test_a_stream_closes_after_its_longest_life_without_an_end(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = create_series(org[0])
    # Made in core and never enqueued: it stays QUEUED.
    job = create_job(org[0], series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,1,X"])
    monkeypatch.setattr(get_settings(), "events_max_seconds", 1.0)
    events = read_events(client, auth, job)
    assert [(name, doc["status"]) for name, doc in events] == [("job", "QUEUED")]
