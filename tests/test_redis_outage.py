"""A Redis that hangs or is gone: the rate limiter lets requests through without waiting on
it each time, and says so once per outage, not once per request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.ratelimit import TIMEOUT_SECONDS, RateLimiter
from tests.factories import create_series
from tests.processes import RedisServer, service_env
from tests.processes import api as start_api


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _pause(server: RedisServer, seconds: float) -> None:
    """Every client's commands wait for `seconds`, as on a Redis that hangs."""
    server.client().execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")


def test_a_hanging_redis_costs_one_timeout_then_requests_pass_at_once(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(own_redis.url, "outage-test", open_seconds=1.0)
    assert limiter.retry_after(1, "requests", 2) is None
    assert limiter.retry_after(1, "requests", 2) is None
    assert limiter.retry_after(1, "requests", 2) is not None  # counted: the third is over

    caplog.set_level(logging.WARNING, logger="core.ratelimit")
    _pause(own_redis, 4)
    started = time.monotonic()
    waits = []
    for _ in range(50):
        before = time.monotonic()
        assert limiter.retry_after(2, "requests", 100) is None  # let through
        waits.append(time.monotonic() - before)
    elapsed = time.monotonic() - started
    # One request paid the timeout; the circuit was open for the others (a retry of Redis
    # each open_seconds may pay it once more).
    slow = [wait for wait in waits if wait >= TIMEOUT_SECONDS / 2]
    assert len(slow) <= 2, waits
    assert elapsed < 3 * TIMEOUT_SECONDS + 0.5, elapsed
    outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage) == 1, [r.getMessage() for r in caplog.records]
    assert outage[0].exc_info is None  # one line, no traceback

    # Redis answers again: after the open time, requests are counted again, and it is said.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        limiter.retry_after(3, "requests", 100)
        if any("available again" in r.getMessage() for r in caplog.records):
            break
    assert any("available again" in r.getMessage() for r in caplog.records)
    assert limiter.retry_after(1, "requests", 2) is not None  # still over, so counting


def test_a_redis_that_is_gone_is_logged_once_per_outage(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(own_redis.url, "gone-test", open_seconds=0.2)
    assert limiter.retry_after(1, "requests", 10) is None
    caplog.set_level(logging.WARNING, logger="core.ratelimit")
    own_redis.stop()
    for _ in range(30):
        assert limiter.retry_after(1, "requests", 10) is None
        time.sleep(0.02)  # past open_seconds: Redis is tried again, and fails again, unlogged
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


def test_polls_stay_quick_while_redis_hangs(
    database_url: str,
    own_redis: RedisServer,
    org: tuple[int, str],
    tmp_path: Path,
) -> None:
    org_id, key = org
    create_series(org_id)
    log = tmp_path / "api.log"
    process, url = start_api(service_env(REDIS_URL=own_redis.url, BULKREDEEM_DB_POOL_SIZE="2"), log)
    try:
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
            assert http.get("/v1/jobs/999999").status_code == 404  # warm
            pause = threading.Thread(target=_pause, args=(own_redis, 6))
            pause.start()
            pause.join()
            times = []
            for _ in range(40):
                before = time.monotonic()
                answer = http.get("/v1/jobs/999999")
                times.append(time.monotonic() - before)
                assert answer.status_code == 404, answer.text
        # At most a couple paid Redis's timeout; the rest did not wait on it.
        assert len([t for t in times if t >= TIMEOUT_SECONDS]) <= 2, times
        assert sorted(times)[len(times) // 2] < TIMEOUT_SECONDS / 2, times
    finally:
        process.stop()
    text = log.read_text()
    assert text.count("rate limiter unavailable") == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
