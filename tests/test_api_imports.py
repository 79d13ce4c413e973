"""The API sends tasks by name: importing it loads neither the worker's Celery app nor its
tasks, and an upload still reaches a real worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from celery import Celery

from api.doorbell import _app
from core.tasknames import DELIVER_WEBHOOK, PROCESS_JOB, PURGE_FILES, SWEEP

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_api_loads_no_worker_module() -> None:
    probe = (
        "import json, sys; import api.app; app = api.app.create_app(); "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'worker' "
        "or m.startswith('worker.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_worker_registers_every_task_the_api_and_beat_send_by_name() -> None:
    from worker.app import celery_app

    celery_app.loader.import_default_modules()
    registered = set(celery_app.tasks)
    assert {PROCESS_JOB, DELIVER_WEBHOOK, SWEEP, PURGE_FILES} <= registered
    beat = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert beat <= registered


def test_the_doorbell_sends_on_the_configured_queue() -> None:
    sender = _app()
    assert isinstance(sender, Celery)
    from core.settings import get_settings

    assert sender.conf.task_default_queue == get_settings().queue_name
