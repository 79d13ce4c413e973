"""Metrics: jobs of every org by status, for /metrics (the service sees one org at a time).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

from core.settings import get_settings

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "br_job_counts()"


def upgrade() -> None:
    # Counts only, never a row of an org: safe to hand to the service role across orgs.
    op.execute(
        """
        CREATE FUNCTION br_job_counts() RETURNS TABLE (status text, jobs bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT status::text, count(*) FROM upload_jobs GROUP BY status
        $$
        """
    )
    role = get_settings().app_db_role.replace('"', '""')
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {SIGNATURE} TO "{role}"')


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
