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
            # Across orgs, so through the owner's functions (row-level security hides the rest).
            rows = session.execute(
                text("SELECT job_id, storage_key FROM br_files_to_purge(:days, :batch)"),
                {"days": settings.file_retention_days, "batch": batch},
            ).all()
            for row in rows:
                storage.delete(row.storage_key)
            if rows:
                session.execute(
                    text("SELECT br_files_purged(:ids)"), {"ids": [row.job_id for row in rows]}
                )
        purged += len(rows)
        if len(rows) < batch:
            break
    if purged:
        log.info(
            "purged %d uploaded files older than %d days", purged, settings.file_retention_days
        )
    with transaction() as session:
        dry = session.execute(text("SELECT br_purge_dry_runs()")).scalar_one()
    if dry:
        log.info("purged %d rows of ended dry runs", dry)
    return purged
