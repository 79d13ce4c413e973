"""Per-org request limits, counted in Redis so that every API process shares them."""

from __future__ import annotations

import logging
import os
import time

import redis

from core.settings import get_settings

log = logging.getLogger(__name__)
WINDOW_SECONDS = 60


class RateLimiter:
    """A fixed one-minute window per org and kind of request."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.prefix = prefix

    def retry_after(self, org_id: int, bucket: str, per_minute: int) -> float | None:
        """Count one request; the seconds to wait when it is over the limit, else None."""
        if per_minute <= 0:
            return None
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"{self.prefix}:rate:{bucket}:{org_id}:{window}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2)
            count = int(pipe.execute()[0])
        except redis.RedisError:
            # A limiter that is down must not take the service down with it.
            log.warning("rate limiter unavailable; letting the request through", exc_info=True)
            return None
        if count <= per_minute:
            return None
        return WINDOW_SECONDS - (now % WINDOW_SECONDS)


_limiter: tuple[int, RateLimiter] | None = None


def get_limiter() -> RateLimiter:
    global _limiter
    if _limiter is None or _limiter[0] != os.getpid():
        settings = get_settings()
        _limiter = (os.getpid(), RateLimiter(settings.redis_url, settings.redis_prefix))
    return _limiter[1]
