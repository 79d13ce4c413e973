"""The Celery settings that exactly-once and fairness rely on, and file retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from core import retention
from core.apply import IDLE_IN_TRANSACTION_SECONDS, STATEMENT_TIMEOUT_SECONDS, prepare_connection
from core.db import get_engine
from core.settings import get_settings
from core.storage import get_storage
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_job, create_series


def test_celery_is_configured_for_late_acks_and_short_tasks(database_url: str) -> None:
    from worker.app import celery_app

    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    visibility = conf.broker_transport_options["visibility_timeout"]
    # A task never outlives the visibility timeout, so Redis never re-delivers a live task:
    # under prefork by Celery's limits, under the solo pool (what runs) by Postgres's timeouts
    # on every statement and every pause inside a chunk's transaction.
    assert conf.task_soft_time_limit < conf.task_time_limit < visibility
    # A slice is far shorter than the time limits, and the lease renews several times a lease.
    assert get_settings().slice_seconds * 4 <= conf.task_soft_time_limit
    assert conf.task_default_queue == get_settings().queue_name
    assert {entry["task"] for entry in conf.beat_schedule.values()} == {
        "bulkredeem.sweep",
        "bulkredeem.purge_files",
    }


def test_a_workers_connection_bounds_every_statement_and_pause_under_the_visibility_timeout(
    database_url: str,
) -> None:
    """Under the solo pool Celery enforces no time limit: Postgres's timeouts bound a slice."""
    from worker.app import celery_app

    visibility = celery_app.conf.broker_transport_options["visibility_timeout"]
    raw = get_engine().raw_connection()
    try:
        conn = raw.driver_connection
        conn.rollback()
        prepare_connection(conn)
        seconds = {}
        for name in ("statement_timeout", "idle_in_transaction_session_timeout"):
            row = conn.execute(
                "SELECT setting::int / 1000 FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()
            seconds[name] = row[0]
        conn.rollback()
    finally:
        raw.close()
    assert seconds == {
        "statement_timeout": STATEMENT_TIMEOUT_SECONDS,
        "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_SECONDS,
    }
    # A chunk is a handful of statements: even at their limits it ends long before Redis
    # would hand its message to another worker.
    assert 0 < 10 * STATEMENT_TIMEOUT_SECONDS + IDLE_IN_TRANSACTION_SECONDS < visibility


def test_old_files_are_purged_but_jobs_and_row_errors_stay(
    org: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    lines = ["date,till,mobile,code", f"{SAMPLE_MS},T1,9988776655,NOPE"]
    old, recent, running = (create_job(org_id, series, lines) for _ in range(3))
    days = get_settings().file_retention_days
    with admin_transaction() as session:
        for job_id, finished in (
            (old, datetime.now(UTC) - timedelta(days=days + 1)),
            (recent, datetime.now(UTC) - timedelta(days=days - 1)),
        ):
            session.execute(
                text(
                    "UPDATE upload_jobs SET status = 'COMPLETED_WITH_ERRORS', "
                    "finished_at = :finished, rows_processed = 1, rows_failed = 1 WHERE id = :id"
                ),
                {"finished": finished, "id": job_id},
            )
            session.execute(
                text(
                    "INSERT INTO job_row_errors (job_id, row_number, org_id, code, message, cells)"
                    " VALUES (:id, 2, :org, 702, 'no coupon', ARRAY['x'])"
                ),
                {"id": job_id, "org": org_id},
            )
        keys = dict(
            session.execute(
                text("SELECT id, storage_key FROM upload_jobs WHERE id = ANY(:ids)"),
                {"ids": [old, recent, running]},
            ).all()
        )
    storage = get_storage()
    assert all(storage.exists(key) for key in keys.values())

    assert retention.purge_old_files() >= 1

    assert not storage.exists(keys[old])
    assert storage.exists(keys[recent])
    assert storage.exists(keys[running])  # never a file a job may still read
    with admin_transaction() as session:
        rows = session.execute(
            text(
                "SELECT j.id, j.file_deleted_at IS NOT NULL, j.rows_failed, count(e.row_number) "
                "FROM upload_jobs j LEFT JOIN job_row_errors e ON e.job_id = j.id "
                "WHERE j.id = ANY(:ids) GROUP BY j.id ORDER BY j.id"
            ),
            {"ids": [old, recent]},
        ).all()
    assert [tuple(r) for r in rows] == [(old, True, 1, 1), (recent, False, 1, 1)]
    assert retention.purge_old_files() == 0  # nothing twice
