"""Prometheus metrics: counters of this process, and the shared state read at scrape time.

The counters and the histogram live in the default registry of the process that moves them
(the worker applies chunks, the API stores uploads). Jobs by status and the queue depth are
the same for every process, so only the API serves them (`scrape_state`), read from Postgres
and Redis when scraped: a fleet of workers does not report them once each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from core.db import transaction
from core.models.jobs import ACTIVE_STATUSES, TERMINAL_STATUSES
from core.settings import get_settings

log = logging.getLogger(__name__)

# Short: a scrape must answer even when a dependency hangs.
STATE_TIMEOUT_SECONDS = 2.0

ROWS_PROCESSED = Counter(
    "bulkredeem_rows_processed",
    "Data rows applied or failed by committed chunks (dry runs included).",
)
ROWS_FAILED = Counter(
    "bulkredeem_rows_failed",
    "Rows that failed in committed chunks, by row error code.",
    ["code"],
)
CHUNK_SECONDS = Histogram(
    "bulkredeem_chunk_duration_seconds",
    "Time to decide, apply and commit one chunk.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
UPLOAD_BYTES = Counter(
    "bulkredeem_upload_bytes",
    "Bytes of uploaded files stored for new jobs.",
)


def chunk_committed(seconds: float, succeeded: int, failed: int, codes: Mapping[int, int]) -> None:
    CHUNK_SECONDS.observe(seconds)
    ROWS_PROCESSED.inc(succeeded + failed)
    for code, count in codes.items():
        if count:
            ROWS_FAILED.labels(code=str(code)).inc(count)


def upload_stored(size: int) -> None:
    UPLOAD_BYTES.inc(size)


FINISHED_WINDOW_SECONDS = 24 * 3600


def job_counts() -> tuple[dict[str, int], dict[str, int]]:
    """Jobs of every org in flight by status, and those that ended within the last day (the
    owner's functions: the service sees one org at a time). Both read through indexes what is
    active or recent, never every job ever made."""
    active = dict.fromkeys(ACTIVE_STATUSES, 0)
    finished = dict.fromkeys(TERMINAL_STATUSES, 0)
    with transaction() as session:
        session.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"),
            {"ms": str(int(STATE_TIMEOUT_SECONDS * 1000))},
        )
        for status, jobs in session.execute(text("SELECT status, jobs FROM br_job_counts()")):
            active[status] = int(jobs)
        for status, jobs in session.execute(
            text("SELECT status, jobs FROM br_jobs_finished(:seconds)"),
            {"seconds": FINISHED_WINDOW_SECONDS},
        ):
            finished[status] = int(jobs)
    return active, finished


def redis_client(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(
        url or get_settings().redis_url,
        socket_timeout=STATE_TIMEOUT_SECONDS,
        socket_connect_timeout=STATE_TIMEOUT_SECONDS,
    )


def queue_depth() -> int:
    """Messages waiting on the Celery queue (its Redis list)."""
    client = redis_client()
    try:
        return int(client.llen(get_settings().queue_name))
    finally:
        client.close()


class StateCollector(Collector):
    """Jobs by status and queue depth, read when scraped; a source that fails is left out."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            active, finished = job_counts()
        except Exception as exc:
            log.warning("metrics: jobs by status unavailable: %s", type(exc).__name__)
        else:
            jobs = GaugeMetricFamily(
                "bulkredeem_jobs", "Jobs of every org in flight, by status.", labels=["status"]
            )
            for status, count in active.items():
                jobs.add_metric([status], count)
            yield jobs
            ended = GaugeMetricFamily(
                "bulkredeem_jobs_finished_last_day",
                "Jobs of every org that ended in the last 24 hours, by status.",
                labels=["status"],
            )
            for status, count in finished.items():
                ended.add_metric([status], count)
            yield ended
        try:
            depth = queue_depth()
        except Exception as exc:
            log.warning("metrics: queue depth unavailable: %s", type(exc).__name__)
        else:
            yield GaugeMetricFamily(
                "bulkredeem_queue_depth", "Messages waiting on the Celery queue.", value=depth
            )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # read only when scraped, never at registration


_STATE = CollectorRegistry(auto_describe=False)
_STATE.register(StateCollector())


def scrape_state() -> bytes:
    """The shared state, in the text format."""
    return generate_latest(_STATE)


def scrape_api() -> bytes:
    """What the API's /metrics serves: this process's registry, then the shared state."""
    return generate_latest(REGISTRY) + scrape_state()
