"""Completion webhooks against a real receiver on loopback: signed, retried, recorded, refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app as cli_app
from core import pipeline
from core.db import transaction
from core.models import Org
from core.settings import get_settings
from core.webhooks import delivery
from tests import processes
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, job_id_of, upload


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers the given statuses in
    turn (the last one for ever after)."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers) or [200]
        self.requests: list[tuple[Message, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((self.headers, body))
                status = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/bulkredeem?x=1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(200)
    yield made
    made.close()


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    """Loopback allowed, and doorbells rung onto a queue nobody serves: these tests deliver
    in-process, and the session's worker (loopback refused) must not race them."""
    monkeypatch.setattr(get_settings(), "webhook_allow_private", True)
    monkeypatch.setattr(get_settings(), "queue_name", f"webhooks-quiet-{uuid.uuid4().hex[:8]}")


def _csv(tmp_path: Path) -> Path:
    # Unknown coupons: the job runs to COMPLETED_WITH_ERRORS with no reference data at all.
    return write_csv(
        tmp_path / "r.csv",
        ["date", "till", "mobile", "code"],
        [(SAMPLE_MS, "T1", "9988776655", "NOPE1"), (SAMPLE_MS, "T1", "9988776655", "NOPE2")],
    )


def _upload(
    client: TestClient, auth: dict[str, str], series: int, tmp_path: Path, callback: str
) -> int:
    extra = {"callbackUrl": callback}
    return job_id_of(upload(client, auth, series, _csv(tmp_path), MOBILE_HEADERS, extra=extra))


def _cancel(client: TestClient, auth: dict[str, str], job_id: int) -> None:
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELLED"


def _doc(client: TestClient, auth: dict[str, str], job_id: int) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _secret_from_cli(org_id: int) -> str:
    with admin_transaction() as session:
        name = session.execute(select(Org.name).where(Org.id == org_id)).scalar_one()
    result = CliRunner().invoke(cli_app, ["orgs", "webhook-secret", name])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _verify(headers: Message, body: bytes, secret: str) -> None:
    fields = dict(part.split("=", 1) for part in headers["X-Bulkredeem-Signature"].split(","))
    assert abs(int(fields["t"]) - time.time()) < 120
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(fields["v1"], expected.hexdigest())


# --- refused at upload ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://127.0.0.1/hook", "127.0.0.1"),
        ("http://10.0.0.1/hook", "10.0.0.1"),
        ("http://[::1]:8080/hook", "::1"),
        ("http://[::ffff:127.0.0.1]/hook", "non-public"),
        ("http://localhost/hook", "non-public"),
        ("http://0.0.0.0/", "0.0.0.0"),
        ("http://224.0.0.1/", "224.0.0.1"),
        ("ftp://example.com/hook", "http"),
        ("http:///nohost", "host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/" + "a" * 2000, "2000"),
    ],
)
def test_a_callback_url_the_service_must_not_call_is_refused_at_upload(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    url: str,
    words: str,
) -> None:
    assert get_settings().webhook_allow_private is False
    series = create_series(org[0])
    response = upload(
        client, auth, series, _csv(tmp_path), MOBILE_HEADERS, extra={"callbackUrl": url}
    )
    assert response.status_code == 400, response.text
    [problem] = response.json()["errors"]
    assert problem["field"] == "callbackUrl"
    assert "callbackUrl" in problem["message"] and words in problem["message"]


def test_a_job_without_a_callback_url_shows_callback_null(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    job_id = job_id_of(upload(client, auth, series, _csv(tmp_path), MOBILE_HEADERS))
    assert _doc(client, auth, job_id)["callback"] is None


# --- delivered in-process (the task's body) ------------------------------------------------


def test_a_completed_job_is_posted_once_signed_with_the_orgs_secret(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    receiver: Receiver,
    in_process: None,
) -> None:
    series = create_series(org[0])
    job_id = _upload(client, auth, series, tmp_path, receiver.url)
    assert _doc(client, auth, job_id)["callback"] == {
        "url": receiver.url,
        "state": "pending",
        "attempts": [],
        "nextAttemptAt": None,
    }
    while pipeline.run_slice(job_id) is not pipeline.SliceResult.DONE:
        pass

    assert delivery.deliver(job_id) == delivery.Outcome("delivered")
    assert delivery.deliver(job_id) == delivery.Outcome("not_due")  # a second message: no-op

    [(headers, body)] = receiver.requests
    assert headers["Content-Type"] == "application/json"
    _verify(headers, body, _secret_from_cli(org[0]))
    sent = json.loads(body)
    shown = _doc(client, auth, job_id)
    callback = shown.pop("callback")
    assert sent == shown and sent["status"] == "COMPLETED_WITH_ERRORS"
    assert callback["state"] == "delivered"
    [attempt] = callback["attempts"]
    assert attempt["status"] == 200 and attempt["error"] is None and attempt["durationMs"] >= 0


def test_a_500_is_retried_with_backoff_and_both_attempts_are_shown(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    in_process: None,
) -> None:
    receiver = Receiver(500, 200)
    try:
        job_id = _upload(client, auth, create_series(org[0]), tmp_path, receiver.url)
        _cancel(client, auth, job_id)

        first = delivery.deliver(job_id, base_delay=0.2)
        assert first.state == "pending" and first.retry_in == pytest.approx(0.2)
        waiting = _doc(client, auth, job_id)["callback"]
        assert waiting["state"] == "pending" and waiting["nextAttemptAt"] is not None
        assert [a["status"] for a in waiting["attempts"]] == [500]
        assert delivery.deliver(job_id, base_delay=0.2).state == "not_due"  # not yet

        time.sleep(0.3)
        assert delivery.deliver(job_id, base_delay=0.2) == delivery.Outcome("delivered")
        done = _doc(client, auth, job_id)["callback"]
        assert done["state"] == "delivered"
        assert [a["status"] for a in done["attempts"]] == [500, 200]
        assert len(receiver.requests) == 2
        assert receiver.requests[0][1] == receiver.requests[1][1]  # the same body both times
    finally:
        receiver.close()


def test_a_4xx_ends_the_delivery_failed_and_a_timeout_budget_ends_retries(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    in_process: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = Receiver(410)
    down = Receiver(503)
    try:
        series = create_series(org[0])
        refused = _upload(client, auth, series, tmp_path, gone.url)
        _cancel(client, auth, refused)
        assert delivery.deliver(refused) == delivery.Outcome("failed")

        monkeypatch.setattr(get_settings(), "webhook_retry_seconds", 0.0)
        unreachable = _upload(client, auth, series, tmp_path, down.url)
        _cancel(client, auth, unreachable)
        assert delivery.deliver(unreachable) == delivery.Outcome("failed")
        attempts = _doc(client, auth, unreachable)["callback"]["attempts"]
        assert [a["status"] for a in attempts] == [503]
    finally:
        gone.close()
        down.close()


def test_an_address_that_turned_private_is_refused_at_delivery(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    receiver: Receiver,
    in_process: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id = _upload(client, auth, create_series(org[0]), tmp_path, receiver.url)
    _cancel(client, auth, job_id)
    # As if DNS pointed the host elsewhere since the upload: the check runs again.
    monkeypatch.setattr(get_settings(), "webhook_allow_private", False)
    assert delivery.deliver(job_id) == delivery.Outcome("failed")
    [attempt] = _doc(client, auth, job_id)["callback"]["attempts"]
    assert attempt["status"] is None and "non-public" in attempt["error"]
    assert receiver.requests == []


def test_the_sweeper_rings_again_for_a_delivery_whose_message_was_lost(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    receiver: Receiver,
    in_process: None,
) -> None:
    job_id = _upload(client, auth, create_series(org[0]), tmp_path, receiver.url)
    _cancel(client, auth, job_id)  # its doorbell went to a queue nobody serves: lost
    with transaction() as session:
        assert job_id in delivery.sweep(session, grace_seconds=60)  # never rung by the sweeper
    with transaction() as session:
        assert job_id not in delivery.sweep(session, grace_seconds=60)  # rung a moment ago
    assert delivery.deliver(job_id).state == "delivered"
    with transaction() as session:
        assert job_id not in delivery.sweep(session, grace_seconds=0)


def test_the_cli_shows_the_same_secret_until_rotated(org: tuple[int, str]) -> None:
    first = _secret_from_cli(org[0])
    assert len(bytes.fromhex(first)) >= 32
    assert _secret_from_cli(org[0]) == first
    with admin_transaction() as session:
        name = session.execute(select(Org.name).where(Org.id == org[0])).scalar_one()
    rotated = CliRunner().invoke(cli_app, ["orgs", "webhook-secret", name, "--rotate"])
    assert rotated.exit_code == 0 and rotated.output.strip() not in ("", first)
    assert _secret_from_cli(org[0]) == rotated.output.strip()


# --- through a real Celery worker ----------------------------------------------------------


def test_a_worker_delivers_cancelled_and_completed_jobs_retrying_after_a_500(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = f"webhooks-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(get_settings(), "webhook_allow_private", True)
    monkeypatch.setattr(get_settings(), "queue_name", queue)  # where the API rings
    flaky = Receiver(500, 200)
    steady = Receiver(200)
    worker = None
    try:
        series = create_series(org[0])
        cancelled = _upload(client, auth, series, tmp_path, flaky.url)
        _cancel(client, auth, cancelled)  # QUEUED: ends here, in the API
        env = processes.service_env(
            BULKREDEEM_QUEUE_NAME=queue, BULKREDEEM_WEBHOOK_ALLOW_PRIVATE="true"
        )
        # Started after the cancel, so that it cannot have taken the job first.
        worker = processes.worker(env, queue, tmp_path / "worker.log")
        completed = _upload(client, auth, series, tmp_path, steady.url)

        deadline = time.monotonic() + 60
        while True:
            states = [
                _doc(client, auth, job)["callback"]["state"] for job in (cancelled, completed)
            ]
            if states == ["delivered", "delivered"]:
                break
            assert time.monotonic() < deadline, (states, worker.text()[-3000:])
            time.sleep(0.2)

        secret = _secret_from_cli(org[0])
        attempts = _doc(client, auth, cancelled)["callback"]["attempts"]
        assert [a["status"] for a in attempts] == [500, 200]
        assert len(flaky.requests) == 2
        assert json.loads(flaky.requests[-1][1])["status"] == "CANCELLED"
        _verify(*flaky.requests[-1], secret)
        [(headers, body)] = steady.requests
        assert json.loads(body)["status"] == "COMPLETED_WITH_ERRORS"
        _verify(headers, body, secret)
    finally:
        if worker is not None:
            worker.stop()
        flaky.close()
        steady.close()
