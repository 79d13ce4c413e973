"""Celery tasks: ids in, a call into core/ out. Nothing here knows how a job is processed."""

from __future__ import annotations

import logging

import redis

from core import pipeline, retention
from core.db import transaction
from core.jobs.sweep import sweep as sweep_jobs
from core.settings import get_settings
from core.tasknames import DELIVER_WEBHOOK, PROCESS_JOB, PURGE_FILES, SWEEP
from core.webhooks import delivery
from worker.app import celery_app

log = logging.getLogger(__name__)


def enqueue_job(job_id: int) -> None:
    """Ring the doorbell. If Redis is down the job waits in Postgres for the sweeper."""
    process_job.apply_async(args=[job_id], queue=get_settings().queue_name)


def enqueue_delivery(job_id: int, countdown: float = 0.0) -> None:
    """Ring for the job's webhook delivery; a lost message is re-rung by the sweeper."""
    deliver_webhook.apply_async(
        args=[job_id], queue=get_settings().queue_name, countdown=countdown or None
    )


def ring_delivery_if_due(job_id: int) -> None:
    """After the commit that may have ended the job: its webhook, if it has one due."""
    try:
        if delivery.due_now(job_id):
            enqueue_delivery(job_id)
    except Exception:
        log.warning("job %s: could not ring its webhook; the sweeper will", job_id, exc_info=True)


@celery_app.task(name=PROCESS_JOB)
def process_job(job_id: int) -> str:
    result = pipeline.run_slice(job_id)
    if result is pipeline.SliceResult.MORE:
        enqueue_job(job_id)
    elif result is pipeline.SliceResult.DONE:
        ring_delivery_if_due(job_id)
        # A place under the org's cap of running jobs is free: start the next in line.
        for waiting in pipeline.next_jobs(job_id):
            enqueue_job(waiting)
    elif result is pipeline.SliceResult.NOT_CLAIMED:
        ring_delivery_if_due(job_id)  # a cancel may have ended it between slices
    return result.value


@celery_app.task(name=DELIVER_WEBHOOK)
def deliver_webhook(job_id: int) -> str:
    outcome = delivery.deliver(job_id)
    if outcome.retry_in is not None:
        # Exponential backoff: the next attempt is a message with a countdown. Postgres has
        # its due time, so the sweeper rings again should Redis lose this one.
        enqueue_delivery(job_id, countdown=outcome.retry_in)
    return outcome.state


def redis_forgot() -> bool:
    """Whether Redis lost what it held since the last sweep (flushed, or restarted empty).

    The sweeper leaves a mark in Redis; a sweep that finds none knows that every message
    queued before may be gone, and rings for every waiting job at once rather than after
    `BULKREDEEM_QUEUED_REQUEUE_SECONDS` (a second message costs a worker one look at the
    lease). The first sweep on a new Redis rings for them all too, which is as harmless.
    """
    settings = get_settings()
    mark = f"{settings.redis_prefix}:{settings.queue_name}:swept"
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
        try:
            return bool(client.set(mark, "1", nx=True))
        finally:
            client.close()
    except redis.RedisError:
        log.warning("sweep: could not read the sweeper's mark in Redis", exc_info=True)
        return False


@celery_app.task(name=SWEEP)
def sweep() -> list[int]:
    forgot = redis_forgot()
    with transaction() as session:
        job_ids = sweep_jobs(session, stale_seconds=0 if forgot else None)
    if forgot and job_ids:
        log.info("sweep: Redis lost its messages; ringing again for %s jobs", len(job_ids))
    for job_id in job_ids:
        enqueue_job(job_id)
    # After the commit above: jobs the sweeper just gave up on have their deliveries now.
    with transaction() as session:
        deliveries = delivery.sweep(session)
    for job_id in deliveries:
        enqueue_delivery(job_id)
    return job_ids


@celery_app.task(name=PURGE_FILES)
def purge_files() -> int:
    return retention.purge_old_files()
