"""Deleting uploaded files once their jobs are old; jobs, counts and row errors stay."""

from __future__ import annotations

import logging

from sqlalchemy import text

from core.db import transaction
from core.settings import get_settings
from core.storage import get_storage

log = logging.getLogger(__name__)


def purge_old_files(batch: int = 500) -> int:
    settings = get_settings()
    storage = get_storage()
    purged = 0
    while True:
        with transaction() as session:
            rows = session.execute(
                text(
                    """
                    SELECT id, storage_key FROM upload_jobs
                    WHERE file_deleted_at IS NULL
                      AND status IN ('COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED')
                      AND finished_at < now() - make_interval(days => :days)
                    ORDER BY id LIMIT :batch
                    FOR UPDATE SKIP LOCKED
                    """
                ),
                {"days": settings.file_retention_days, "batch": batch},
            ).all()
            for row in rows:
                storage.delete(row.storage_key)
            if rows:
                session.execute(
                    text("UPDATE upload_jobs SET file_deleted_at = now() WHERE id = ANY(:ids)"),
                    {"ids": [row.id for row in rows]},
                )
        purged += len(rows)
        if len(rows) < batch:
            break
    if purged:
        log.info(
            "purged %d uploaded files older than %d days", purged, settings.file_retention_days
        )
    return purged
