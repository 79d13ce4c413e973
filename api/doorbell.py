"""The API's doorbell: it sends the worker's tasks by name, without importing the Celery app
or its tasks (worker/), so that importing the API builds no broker connection and loads none
of the worker's machinery. Redis is only a doorbell: a message lost here is sent again by
the sweeper from Postgres."""

from __future__ import annotations

import logging
import os

from celery import Celery

from core.settings import get_settings
from core.tasknames import DELIVER_WEBHOOK, PROCESS_JOB
from core.webhooks import delivery

log = logging.getLogger(__name__)
_sender: tuple[int, Celery] | None = None


def _app() -> Celery:
    """A Celery app that only sends, made on first use in each process."""
    global _sender
    if _sender is None or _sender[0] != os.getpid():
        settings = get_settings()
        app = Celery("bulkredeem-api", broker=settings.redis_url, set_as_current=False)
        app.conf.update(task_default_queue=settings.queue_name, task_ignore_result=True)
        _sender = (os.getpid(), app)
    return _sender[1]


def enqueue_job(job_id: int) -> None:
    """Ring for the job. If Redis is down the job waits in Postgres for the sweeper."""
    _app().send_task(PROCESS_JOB, args=[job_id], queue=get_settings().queue_name)


def ring_delivery_if_due(job_id: int) -> None:
    """After the commit that may have ended the job: its webhook, if it has one due."""
    try:
        if delivery.due_now(job_id):
            _app().send_task(DELIVER_WEBHOOK, args=[job_id], queue=get_settings().queue_name)
    except Exception:
        log.warning("job %s: could not ring its webhook; the sweeper will", job_id, exc_info=True)
