"""Retention passes over reverts: they have no file of their own (migration 0012).

`br_files_to_purge` listed every ended job whose file was not deleted yet; a revert's storage
key is empty, and deleting it would name the store's root (the local store refuses: the
directory is no file, and every purge after it would stop at the same revert).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# CREATE OR REPLACE keeps the function's owner and grants (migration 0002 made them).
_PURGE = """
CREATE OR REPLACE FUNCTION br_files_to_purge(p_days integer, p_batch integer)
RETURNS TABLE (job_id bigint, storage_key text)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT id, storage_key FROM upload_jobs
    WHERE file_deleted_at IS NULL
      AND status IN ('COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED')
      AND finished_at < now() - make_interval(days => p_days)
      {also}
    ORDER BY id LIMIT p_batch
    FOR UPDATE SKIP LOCKED
$$
"""


def upgrade() -> None:
    op.execute(_PURGE.format(also="AND storage_key <> ''"))


def downgrade() -> None:
    op.execute(_PURGE.format(also=""))
