"""The Celery application. Redis is only the doorbell: Postgres holds every job's truth."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_ready,
)
from prometheus_client import start_http_server

from core import logs
from core.db import dispose_engine
from core.settings import get_settings
from core.tasknames import PURGE_FILES, SWEEP
from worker.priority import lower_priority

settings = get_settings()

celery_app = Celery("bulkredeem", broker=settings.redis_url, include=["worker.tasks"])
celery_app.conf.update(
    task_default_queue=settings.queue_name,
    # A message is acknowledged only when its slice is done; a worker that dies mid-slice
    # gives it back. Fencing in the database makes a second delivery harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # A slice runs for slice_seconds and then one chunk at most. The workers run the solo
    # pool (make run, compose, tests), where Celery enforces no time limit: there a slice is
    # bounded by its deadline in core/pipeline.py and by Postgres (statement_timeout and
    # idle_in_transaction_session_timeout, core/apply.py), all far under the visibility
    # timeout. The limits below take effect under prefork. Should a message still come back
    # while its task runs, the job's lease makes the second delivery exit without a row.
    task_soft_time_limit=max(60, int(settings.slice_seconds * 4)),
    task_time_limit=max(90, int(settings.slice_seconds * 6)),
    broker_transport_options={"visibility_timeout": 3600},
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    beat_schedule={
        "sweep-jobs": {
            "task": SWEEP,
            "schedule": settings.sweep_interval_seconds,
        },
        "purge-files": {"task": PURGE_FILES, "schedule": 3600.0},
    },
)


# A chunk's commit runs on the main thread, a statement at a time; while it waits for Postgres,
# the threads that parse the next chunk and look it up hold the GIL, and the main thread waited
# up to their 5 ms slice after every statement: 10-13 ms for its two one-row lock statements
# on the bench's data, against 2-3 ms with 0.5 ms slices (bench/README.md).
GIL_SWITCH_SECONDS = 0.0005


@worker_init.connect
def _short_gil_slices(**_: Any) -> None:
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


@worker_init.connect
def _below_the_api(**_: Any) -> None:
    lower_priority(get_settings().worker_nice)


@worker_process_init.connect
def _fresh_engine_after_fork(**_: Any) -> None:
    dispose_engine()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_: Any) -> None:
    # Celery made the handlers (-l, --logfile); with "text" its own plain lines stay.
    log_format = get_settings().log_format
    if log_format != "text":
        logs.format_handlers(logger, log_format)


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    # Once, in the worker's main process: the solo pool (make run, compose, tests) applies
    # chunks there too. Under prefork each child counts on its own and this port would show
    # none of it (that would need prometheus_client's multiprocess mode).
    port = get_settings().worker_metrics_port
    if port > 0:
        start_http_server(port)
        logging.getLogger(__name__).info("metrics on port %s", port)
