"""Deleting uploaded files once their jobs are old, and the raw cells their row errors kept
(customers' data, like the file); jobs, counts, codes, messages and row numbers stay.

A unit of work of its own: one transaction a batch, through `core.db.transaction`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import set_org, transaction
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
                if row.storage_key:  # a revert has no file of its own
                    storage.delete(row.storage_key)
            if rows:
                ids = [row.job_id for row in rows]
                _purge_cells(session, ids)
                session.execute(text("SELECT br_files_purged(:ids)"), {"ids": ids})
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


def _purge_cells(session: Session, job_ids: Sequence[int]) -> None:
    """Empty the cells of these jobs' row errors, in the transaction that marks their files
    purged: the reports read the mark and say why the cells are gone (core/reports.py)."""
    by_org: dict[int, list[int]] = defaultdict(list)
    for job_id, org_id in session.execute(
        text("SELECT j, br_job_org(j) FROM unnest(CAST(:ids AS bigint[])) AS j"),
        {"ids": list(job_ids)},
    ):
        if org_id is not None:
            by_org[int(org_id)].append(int(job_id))
    # Each org's rows under its own row-level security, as every write of the service is.
    for org_id, ids in by_org.items():
        set_org(session, org_id)
        session.execute(
            text(
                "UPDATE job_row_errors SET cells = '{}'"
                " WHERE job_id = ANY(:ids) AND cardinality(cells) > 0"
            ),
            {"ids": ids},
        )
