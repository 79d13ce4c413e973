"""Health, readiness and metrics: real Postgres, Redis, file store and a real worker process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from cli.embedded.common import free_port
from core import keys, pipeline
from core.metrics import redis_client
from core.models.jobs import JOB_STATUSES
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_job, create_series
from tests.helpers import MOBILE_HEADERS, job_id_of, upload
from tests.processes import service_env
from tests.processes import worker as start_worker

HEADER = "date,till,mobile,code"


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def jobs_by_status_in_database() -> dict[str, int]:
    """What /metrics should say, counted the slow way: jobs in flight, and ended in a day."""
    with admin_transaction() as session:
        rows = session.execute(
            text(
                "SELECT status, count(*) FROM upload_jobs WHERE status IN ('QUEUED', 'RUNNING')"
                " OR finished_at > now() - interval '1 day' GROUP BY status"
            )
        )
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({status: int(n) for status, n in rows})
        return counts


def _scraped_jobs(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, int]:
    counts = {}
    for status in JOB_STATUSES:
        active = ("bulkredeem_jobs", (("status", status),))
        ended = ("bulkredeem_jobs_finished_last_day", (("status", status),))
        counts[status] = int(scraped[active] if active in scraped else scraped[ended])
    return counts


def job_with_known_outcomes(org_id: int) -> tuple[int, dict[str, int]]:
    """Five rows: one applied, four failing with four codes; the failures by code."""
    series = create_series(org_id)
    customer = create_customer(org_id, mobile="9000000001")
    create_coupon(org_id, series, "ONE", issued_to=customer)
    rows = [
        f"{SAMPLE_MS},T1,9000000001,ONE",
        f"{SAMPLE_MS},T1,9000000001,ONE",  # 790
        f"{SAMPLE_MS},T1,9000000001,NOPE",  # 702
        f"{SAMPLE_MS},T1,9111111111,ONE",  # 701
        "yesterday,T1,9000000001,ONE",  # 729
    ]
    job = create_job(org_id, series, [HEADER, *rows])
    return job, {"790": 1, "702": 1, "701": 1, "729": 1}


def test_healthz_answers_ok_without_a_key(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_postgres_redis_and_storage_answer(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "postgres": "ok",
        "redis": "ok",
        "storage": "ok",
    }


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    monkeypatch.setattr(get_settings(), "redis_url", closed)
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["status"] == "error"
    assert "unreachable" in checks["redis"]["error"]
    assert checks["postgres"] == {"status": "ok"}
    assert checks["storage"] == {"status": "ok"}
    assert "hunter2" not in response.text and "127.0.0.1" not in response.text


def test_readyz_is_503_naming_storage_when_the_file_store_is_not_writable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A directory under a regular file: no one, root included, can write there.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(get_settings(), "storage_url", (blocker / "files").as_uri())
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["storage"]["status"] == "error"
    assert "not writable" in checks["storage"]["error"]
    assert checks["redis"] == {"status": "ok"}
    assert str(tmp_path) not in response.text


def test_metrics_shows_jobs_by_status_as_the_database_holds_them(
    client: TestClient, org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    for _ in range(3):
        create_job(org[0], series, [HEADER, f"{SAMPLE_MS},T1,9000000001,ONE"])
    # A job of another org counts too: the gauge is across orgs.
    with admin_transaction() as session:
        other = keys.create_org(session, f"metrics-{uuid.uuid4().hex[:8]}")[0].id
    create_job(other, create_series(other), [HEADER, f"{SAMPLE_MS},T1,9000000001,ONE"])

    for _ in range(5):  # a session worker may move a job between the two readings
        before = jobs_by_status_in_database()
        response = client.get("/metrics")
        if before == jobs_by_status_in_database():
            break
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    scraped = samples(response.text)
    assert _scraped_jobs(scraped) == before
    assert before["QUEUED"] >= 4
    client_redis = redis_client()
    try:
        depth = client_redis.llen(get_settings().queue_name)
    finally:
        client_redis.close()
    assert scraped[("bulkredeem_queue_depth", ())] == depth


def test_upload_bytes_count_the_stored_file(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    path = tmp_path / "upload.csv"
    path.write_text(f"{HEADER}\n{SAMPLE_MS},T1,9000000001,ONE\n")
    before = sample("bulkredeem_upload_bytes_total")
    job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    assert sample("bulkredeem_upload_bytes_total") - before == path.stat().st_size
    scraped = samples(client.get("/metrics").text)
    assert scraped[("bulkredeem_upload_bytes_total", ())] == sample("bulkredeem_upload_bytes_total")


def test_committed_chunks_count_rows_failures_by_code_and_durations(
    org: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job, failures = job_with_known_outcomes(org[0])
    monkeypatch.setattr(get_settings(), "chunk_rows", 2)  # 5 rows: 3 chunks
    processed = sample("bulkredeem_rows_processed_total")
    failed = {code: sample("bulkredeem_rows_failed_total", {"code": code}) for code in failures}
    chunks = sample("bulkredeem_chunk_duration_seconds_count")

    assert pipeline.run_slice(job, slice_seconds=60) is pipeline.SliceResult.DONE

    assert sample("bulkredeem_rows_processed_total") - processed == 5
    assert {
        code: sample("bulkredeem_rows_failed_total", {"code": code}) - failed[code]
        for code in failures
    } == failures
    assert sample("bulkredeem_chunk_duration_seconds_count") - chunks == 3


@pytest.fixture
def metrics_worker(database_url: str, tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    """A worker of its own (own queue) serving /metrics on a port: (port, queue, log)."""
    port = free_port()
    queue = f"{get_settings().queue_name}-metrics-{uuid.uuid4().hex[:6]}"
    env = service_env(
        BULKREDEEM_WORKER_METRICS_PORT=str(port),
        BULKREDEEM_QUEUE_NAME=queue,
        BULKREDEEM_LOG_FORMAT="json",
    )
    log = tmp_path / "worker.log"
    process = start_worker(env, queue, log)
    try:
        yield port, queue, log
    finally:
        process.stop()


def test_a_worker_serves_its_own_metrics_and_logs_json_lines(
    org: tuple[int, str], metrics_worker: tuple[int, str, Path]
) -> None:
    from worker.tasks import process_job

    port, queue, log = metrics_worker
    job, failures = job_with_known_outcomes(org[0])
    process_job.apply_async(args=[job], queue=queue)
    deadline = time.monotonic() + 60
    while True:
        with admin_transaction() as session:
            status = session.execute(
                text("SELECT status FROM upload_jobs WHERE id = :j"), {"j": job}
            ).scalar_one()
        if status == "COMPLETED_WITH_ERRORS":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)

    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    scraped = samples(response.text)
    # A fresh process: its counters are this job's.
    assert scraped[("bulkredeem_rows_processed_total", ())] == 5
    for code, count in failures.items():
        assert scraped[("bulkredeem_rows_failed_total", (("code", code),))] == count
    assert scraped[("bulkredeem_chunk_duration_seconds_count", ())] == 1
    # The shared state is the API's to serve, not every worker's.
    assert not any(name == "bulkredeem_jobs" for name, _ in scraped)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    applied = [line for line in lines if line["message"] == "chunk applied"]
    assert len(applied) == 1
    assert applied[0]["job_id"] == job and applied[0]["org_id"] == org[0]
    assert applied[0]["level"] == "INFO" and applied[0]["rows"] == 5
    assert any("ready." in line["message"] for line in lines)
