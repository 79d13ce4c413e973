"""Celery tasks: ids in, a call into core/ out. Nothing here knows how a job is processed."""

from __future__ import annotations

import logging

from core import jobs, pipeline, retention
from core.db import transaction
from core.settings import get_settings
from worker.app import celery_app

log = logging.getLogger(__name__)


def enqueue_job(job_id: int) -> None:
    """Ring the doorbell. If Redis is down the job waits in Postgres for the sweeper."""
    process_job.apply_async(args=[job_id], queue=get_settings().queue_name)


@celery_app.task(name="bulkredeem.process_job")
def process_job(job_id: int) -> str:
    result = pipeline.run_slice(job_id)
    if result is pipeline.SliceResult.MORE:
        enqueue_job(job_id)
    elif result is pipeline.SliceResult.DONE:
        # A place under the org's cap of running jobs is free: start the next in line.
        for waiting in pipeline.next_jobs(job_id):
            enqueue_job(waiting)
    return result.value


@celery_app.task(name="bulkredeem.sweep")
def sweep() -> list[int]:
    with transaction() as session:
        job_ids = jobs.sweep(session)
    for job_id in job_ids:
        enqueue_job(job_id)
    return job_ids


@celery_app.task(name="bulkredeem.purge_files")
def purge_files() -> int:
    return retention.purge_old_files()
