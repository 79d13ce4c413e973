"""Per-org request limits, counted in Redis so that every API process shares them."""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from core.settings import get_settings

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60
# After Redis fails a request, the limiter lets requests through uncounted for this long
# before it asks Redis again: a Redis that hangs must not add its timeout to every request.
OPEN_SECONDS = 5.0
TIMEOUT_SECONDS = 0.5


class RateLimiter:
    """A fixed one-minute window per org and kind of request.

    A limiter that is down must not take the service down with it: when Redis fails, the
    circuit opens and requests go through uncounted, without waiting on Redis, until it is
    tried again OPEN_SECONDS later. An outage is logged once when it starts and once when it
    ends, not once per request."""

    def __init__(self, url: str, prefix: str, *, open_seconds: float = OPEN_SECONDS) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
        )
        self.prefix = prefix
        self.open_seconds = open_seconds
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # set while the circuit is open
        self._failing = False

    def retry_after(self, org_id: int, bucket: str, per_minute: int) -> float | None:
        """Count one request; the seconds to wait when it is over the limit, else None."""
        if per_minute <= 0 or not self._closed():
            return None
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"{self.prefix}:rate:{bucket}:{org_id}:{window}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            self._opened(exc)
            return None
        self._recovered()
        if count <= per_minute:
            return None
        return WINDOW_SECONDS - (now % WINDOW_SECONDS)

    def _closed(self) -> bool:
        """Whether to ask Redis: always while it works; once per OPEN_SECONDS while it fails
        (one request then tries it, the others go through meanwhile)."""
        with self._lock:
            if self._retry_at is None:
                return True
            if time.monotonic() < self._retry_at:
                return False
            self._retry_at = time.monotonic() + self.open_seconds
            return True

    def _opened(self, exc: redis.RedisError) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.open_seconds
            first = not self._failing
            self._failing = True
        if first:
            log.warning(
                "rate limiter unavailable (%s: %s); letting requests through uncounted, "
                "trying Redis again every %.0f s",
                type(exc).__name__,
                exc,
                self.open_seconds,
            )

    def _recovered(self) -> None:
        if not self._failing:
            return
        with self._lock:
            was_failing, self._failing, self._retry_at = self._failing, False, None
        if was_failing:
            log.warning("rate limiter available again; counting requests")


_limiter: tuple[int, RateLimiter] | None = None


def get_limiter() -> RateLimiter:
    global _limiter
    if _limiter is None or _limiter[0] != os.getpid():
        settings = get_settings()
        _limiter = (os.getpid(), RateLimiter(settings.redis_url, settings.redis_prefix))
    return _limiter[1]
