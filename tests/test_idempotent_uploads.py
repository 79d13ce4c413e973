"""Idempotency-Key against a real API process: concurrent retries get one job, never a 5xx;
a conflicting request is a 409, answered before its file is stored."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.db import new_session, set_org
from core.models import UploadJob
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series
from tests.helpers import MOBILE_HEADERS
from tests.processes import api as start_api
from tests.processes import service_env

FORM = {
    "customerIdentifier": "MOBILE",
    "couponIdentifier": "COUPON_CODE",
    "uploadHeaders": json.dumps(MOBILE_HEADERS),
}
GOOD = f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,ABC\n".encode()
OTHER = f"date,till,mobile,code\n{SAMPLE_MS},T2,9988776655,ABC\n".encode()


@pytest.fixture(scope="module")
def service(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real API process (uvicorn, its own threadpool) on the test database and storage."""
    process, url = start_api(
        service_env(BULKREDEEM_DB_POOL_SIZE="2"), tmp_path_factory.mktemp("api") / "api.log"
    )
    try:
        yield url
    finally:
        process.stop()


def _stored_files(org_id: int) -> list[Path]:
    root = Path(urlsplit(os.environ["STORAGE_URL"]).path) / f"org-{org_id}"
    return sorted(root.glob("*")) if root.exists() else []


def _read_answer(conn: socket.socket) -> bytes:
    """One HTTP answer off the socket: its head and a body of its Content-Length."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += conn.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def _post(url: str, key: str, series: int, content: bytes, idem: str) -> httpx.Response:
    return httpx.post(
        f"{url}/coupon/api/v1/upload/redeemFile/{series}",
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
        data=FORM,
        files={"file": ("r.csv", content, "text/csv")},
        timeout=60,
    )


def test_concurrent_retries_with_one_key_get_one_job_and_a_conflict_gets_409(
    service: str, org: tuple[int, str]
) -> None:
    org_id, key = org
    series = create_series(org_id)
    retries = 24
    answers: list[httpx.Response | None] = [None] * (retries + 1)
    start = threading.Barrier(retries + 1)

    def send(index: int) -> None:
        start.wait()
        # One request among them has the same key and another file: a different request.
        answers[index] = _post(service, key, series, OTHER if index == 0 else GOOD, "retry-1")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(retries + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = [answer.status_code if answer is not None else None for answer in answers]
    assert all(status is not None and status < 500 for status in statuses), statuses
    job_ids = {
        answer.json()["result"]["redeemUploadJobStatuses"][0]["jobId"]
        for answer in answers
        if answer is not None and answer.status_code == 200
    }
    assert len(job_ids) == 1, (statuses, job_ids)
    # Whichever came first made the job; every request unlike it is refused.
    with admin_transaction() as session:
        made = session.execute(
            select(UploadJob).where(
                UploadJob.org_id == org_id, UploadJob.idempotency_key == "retry-1"
            )
        ).scalar_one()
        file_sha = made.file_sha256
    winner_is_other = statuses[0] == 200
    refused = [i for i, status in enumerate(statuses) if status == 409]
    assert refused == (list(range(1, retries + 1)) if winner_is_other else [0]), statuses
    assert answers[refused[0]] is not None
    assert "Idempotency-Key" in answers[refused[0]].text  # type: ignore[union-attr]
    # One file kept: the job's. The losers' copies are gone.
    assert len(_stored_files(org_id)) == 1
    assert file_sha


def test_a_key_used_for_another_series_is_refused_before_the_file_is_read(
    service: str, org: tuple[int, str]
) -> None:
    org_id, key = org
    first, second = create_series(org_id), create_series(org_id, name="other")
    assert _post(service, key, first, GOOD, "moved").status_code == 200

    # A body announced as 50 MB of which only the start is ever sent: the answer must come
    # without the rest, so it cannot have waited for the file.
    boundary = "b0undary"
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in FORM.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    )
    parts = urlsplit(service)
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as conn:
        conn.sendall(
            (
                f"POST /coupon/api/v1/upload/redeemFile/{second} HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
                f"Idempotency-Key: moved\r\nContent-Length: {50_000_000}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            ).encode()
            + head.encode()
            + GOOD
        )
        answer = _read_answer(conn).decode()
    assert answer.startswith("HTTP/1.1 409"), answer
    assert "Idempotency-Key" in answer
    assert len(_stored_files(org_id)) == 1  # the first upload's


def test_a_repeated_key_stores_nothing_while_its_file_streams(
    service: str, org: tuple[int, str]
) -> None:
    org_id, key = org
    series = create_series(org_id)
    first = _post(service, key, series, GOOD, "again")
    assert first.status_code == 200
    kept = _stored_files(org_id)
    assert len(kept) == 1

    filler = b"x" * (4 << 20)  # a big file, sent in two halves with a pause between
    content = GOOD + filler
    form = "".join(
        f'--bnd\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in FORM.items()
    ) + ('--bnd\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n\r\n')
    body = form.encode() + content + b"\r\n--bnd--\r\n"
    parts = urlsplit(service)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        conn.sendall(
            (
                f"POST /coupon/api/v1/upload/redeemFile/{series} HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
                f"Idempotency-Key: again\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: multipart/form-data; boundary=bnd\r\nConnection: close\r\n\r\n"
            ).encode()
            + body[: len(body) // 2]
        )
        time.sleep(1.0)
        during = _stored_files(org_id)
        conn.sendall(body[len(body) // 2 :])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert during == kept  # not even a partial file
    assert answer.startswith(b"HTTP/1.1 409"), answer[:300]  # same key, other bytes
    assert _stored_files(org_id) == kept

    again = _post(service, key, series, GOOD, "again")
    assert again.status_code == 200
    job_of = lambda answer: answer.json()["result"]["redeemUploadJobStatuses"][0]["jobId"]  # noqa: E731
    assert job_of(again) == job_of(first)
    assert _stored_files(org_id) == kept
    with admin_transaction() as session:
        count = session.execute(
            select(func.count()).select_from(UploadJob).where(UploadJob.org_id == org_id)
        ).scalar_one()
    assert count == 1


def _blocking_job(org_id: int, series: int, idem: str) -> Session:
    """A job with this Idempotency-Key inserted and not committed: an upload with the same key
    then waits on the unique index, mid-transaction, where the test can cut its connection."""
    from core import uploads
    from core.storage import get_storage

    sink = uploads.FileSink(get_storage(), org_id)
    sink.write(GOOD)
    sink.commit()
    form = uploads.UploadForm(fields=dict(FORM), file_name="blocker.csv")
    plan = uploads.judge(form, sink)
    session = new_session()
    session.begin()
    set_org(session, org_id)
    uploads.create_job(
        session,
        org_id=org_id,
        series_id=series,
        plan=plan,
        sink=sink,
        file_name="blocker.csv",
        idempotency_key=idem,
        request_fingerprint="0" * 64,
    )
    return session


def _terminate_waiting_insert(timeout: float = 20) -> None:
    """Terminate the backend of the upload that waits to insert its job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A transaction each time: pg_stat_activity is read once per transaction.
        with admin_transaction() as session:
            pids = (
                session.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                        " AND query ILIKE 'INSERT INTO upload_jobs%'"
                    )
                )
                .scalars()
                .all()
            )
            for pid in pids:
                session.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        if pids:
            return
        time.sleep(0.05)
    raise AssertionError("no upload waited on the job's insert")


def _upload_cutting_its_connection(
    service: str, org: tuple[int, str], idem: str, cuts: int
) -> httpx.Response:
    """An upload whose insert waits on an uncommitted job with its key, while the test
    terminates its backend `cuts` times; then the blocking job goes and the answer comes."""
    org_id, key = org
    series = create_series(org_id)
    blocker = _blocking_job(org_id, series, idem)
    result: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: result.append(_post(service, key, series, GOOD, idem)))
    sender.start()
    try:
        for _ in range(cuts):
            _terminate_waiting_insert()
    finally:
        blocker.rollback()  # a retry, on a new connection, then inserts unhindered
        blocker.close()
        sender.join(timeout=60)
    assert result, "no answer"
    return result[0]


def test_an_upload_whose_connection_is_cut_mid_request_is_retried_once(
    service: str, org: tuple[int, str]
) -> None:
    answer = _upload_cutting_its_connection(service, org, "cut-once", cuts=1)
    assert answer.status_code == 200, answer.text


def test_an_upload_that_loses_its_connection_twice_is_a_503_with_retry_after(
    service: str, org: tuple[int, str]
) -> None:
    org_id = org[0]
    answer = _upload_cutting_its_connection(service, org, "cut-twice", cuts=2)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["status"] == 503  # Capillary's shape: its route
    # Nothing kept of the refused upload: a retry sends it again.
    with admin_transaction() as session:
        assert (
            session.execute(
                select(func.count())
                .select_from(UploadJob)
                .where(UploadJob.org_id == org_id, UploadJob.idempotency_key == "cut-twice")
            ).scalar_one()
            == 0
        )
    assert len(_stored_files(org_id)) == 1  # the blocker's own file only
