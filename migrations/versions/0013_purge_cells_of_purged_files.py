"""The raw cells of row errors go with their job's file (DESIGN.md, Guarantees: Retention).

Since this change, retention empties a job's row errors' cells in the transaction that marks
its file purged. Jobs purged before it still hold theirs: they are emptied here, once. Counts,
codes, messages and row numbers stay. Nothing to undo: the cells are gone with the file.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE job_row_errors e SET cells = '{}'
        FROM upload_jobs j
        WHERE j.id = e.job_id AND j.file_deleted_at IS NOT NULL AND e.cells <> '{}'
        """
    )


def downgrade() -> None:
    pass
