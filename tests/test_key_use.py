"""Using an API key: `last_used_at` at most once a minute, and rate limits shared in Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.ratelimit import WINDOW_SECONDS, RateLimiter
from tests.dbtools import admin_transaction

ROOT = Path(__file__).resolve().parent.parent
OTHER_ORG = 1_000_000  # added to an org id: an org no test has


def last_used(org_id: int) -> datetime | None:
    with admin_transaction() as session:
        value: datetime | None = session.execute(
            text("SELECT last_used_at FROM api_keys WHERE org_id = :o"), {"o": org_id}
        ).scalar_one()
    return value


def age_last_use(org_id: int, seconds: int) -> datetime:
    """Make the key's last use `seconds` old (as the owner); the new value."""
    with admin_transaction() as session:
        value: datetime = session.execute(
            text(
                "UPDATE api_keys SET last_used_at = now() - make_interval(secs => :s) "
                "WHERE org_id = :o RETURNING last_used_at"
            ),
            {"s": seconds, "o": org_id},
        ).scalar_one()
    return value


def use(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/v1/jobs", headers=auth).status_code == 200


def test_last_used_at_is_written_on_first_use_then_at_most_once_a_minute(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    org_id = org[0]
    assert last_used(org_id) is None  # a new key, never used

    before = datetime.now().astimezone()
    use(client, auth)
    first = last_used(org_id)
    assert first is not None
    assert before - timedelta(seconds=5) <= first <= datetime.now().astimezone()

    # Within the minute: no write, whatever the number of requests.
    for _ in range(3):
        use(client, auth)
    assert last_used(org_id) == first
    recent = age_last_use(org_id, 50)
    use(client, auth)
    assert last_used(org_id) == recent

    # Older than a minute: the next use moves it to now.
    stale = age_last_use(org_id, 61)
    use(client, auth)
    moved = last_used(org_id)
    assert moved is not None and moved > stale + timedelta(seconds=55)
    use(client, auth)
    assert last_used(org_id) == moved


def test_a_refused_key_does_not_touch_last_used_at(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    # The right prefix with the wrong secret finds the key's row but must not count as a use.
    key = org[1]
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    answer = client.get("/v1/jobs", headers={"Authorization": f"Bearer {wrong}"})
    assert answer.status_code == 401
    assert last_used(org[0]) is None


@pytest.fixture
def redis_settings() -> tuple[str, str]:
    # What tests/conftest.py set for this run: its Redis and a prefix of its own.
    return os.environ["REDIS_URL"], os.environ["BULKREDEEM_REDIS_PREFIX"]


@pytest.fixture
def fresh_window() -> None:
    """Start well inside a one-minute window, so that the count is not cut in two."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < 10:
        time.sleep(left + 0.1)


@pytest.fixture
def rate_key(
    redis_settings: tuple[str, str], org: tuple[int, str], fresh_window: None
) -> Iterator[str]:
    """The Redis key of this window's upload count for the org (removed afterwards)."""
    url, prefix = redis_settings
    window = int(time.time() // WINDOW_SECONDS)
    client = redis.Redis.from_url(url)
    yield f"{prefix}:rate:uploads:{org[0]}:{window}"
    for org_id in (org[0], org[0] + OTHER_ORG):
        for key in client.scan_iter(f"{prefix}:rate:*:{org_id}:*"):
            client.delete(key)
    client.close()


def test_two_limiters_share_one_count_in_redis(
    redis_settings: tuple[str, str], org: tuple[int, str], rate_key: str
) -> None:
    url, prefix = redis_settings
    first, second = RateLimiter(url, prefix), RateLimiter(url, prefix)
    assert first.client is not second.client  # nothing shared in this process
    limit = 5
    answers = [
        (first if i % 2 == 0 else second).retry_after(org[0], "uploads", limit)
        for i in range(limit)
    ]
    assert answers == [None] * limit  # 5 requests, 3 + 2: within the limit together
    # The sixth, from either, is over it, with the wait until the window ends.
    for limiter in (first, second):
        wait = limiter.retry_after(org[0], "uploads", limit)
        assert wait is not None and 0 < wait <= WINDOW_SECONDS
    # Another org, or another bucket, is counted apart.
    assert first.retry_after(org[0] + OTHER_ORG, "uploads", limit) is None
    assert first.retry_after(org[0], "requests", limit) is None

    plain = redis.Redis.from_url(url)
    try:
        assert int(plain.get(rate_key) or 0) == limit + 2
        assert 0 < int(plain.ttl(rate_key)) <= 2 * WINDOW_SECONDS  # it expires on its own
    finally:
        plain.close()


def test_requests_counted_by_another_process_count_here(
    redis_settings: tuple[str, str], org: tuple[int, str], rate_key: str
) -> None:
    url, prefix = redis_settings
    limit = 4
    child = (
        "import sys\n"
        "from core.ratelimit import RateLimiter\n"
        "limiter = RateLimiter(sys.argv[1], sys.argv[2])\n"
        "answers = [limiter.retry_after(int(sys.argv[3]), 'uploads', 4) for _ in range(3)]\n"
        "assert answers == [None, None, None], answers\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, url, prefix, str(org[0])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    here = RateLimiter(url, prefix)
    assert here.retry_after(org[0], "uploads", limit) is None  # the fourth
    assert here.retry_after(org[0], "uploads", limit) is not None  # the fifth: over
