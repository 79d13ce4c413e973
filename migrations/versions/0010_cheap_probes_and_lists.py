"""Metrics that do not count every job ever made, and indexes for what is read, not written.

- `br_job_counts()` counted every job of every org at each scrape. It now counts the jobs in
  flight (QUEUED, RUNNING: the partial index `ix_upload_jobs_active`) and
  `br_jobs_finished(seconds)` the jobs that ended within a window, through an index on
  `finished_at`: each scrape reads what is active or recent, however old the service.
- `ix_upload_jobs_org_id_id`: the job list without a series filter, newest first, was a sort
  of every job of the org.
- `ix_coupons_issued_to_customer_id`: deleting a customer checks its issued coupons (a foreign
  key), which was a scan of every coupon.
- `ix_job_row_errors_job_id_code` is dropped: no query reads it (a job's counts by code live
  on the job; its report reads the primary key), and every failed row wrote it.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

from core.settings import get_settings

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = "br_job_counts()"
FINISHED = "br_jobs_finished(integer)"


def _grant(signature: str) -> None:
    role = get_settings().app_db_role.replace('"', '""')
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def upgrade() -> None:
    op.create_index("ix_upload_jobs_finished_at", "upload_jobs", ["finished_at"])
    op.create_index("ix_upload_jobs_org_id_id", "upload_jobs", ["org_id", "id"])
    op.create_index("ix_coupons_issued_to_customer_id", "coupons", ["issued_to_customer_id"])
    op.drop_index("ix_job_row_errors_job_id_code", table_name="job_row_errors")
    # Counts only, never a row of an org: safe to hand to the service role across orgs.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION br_job_counts() RETURNS TABLE (status text, jobs bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT status::text, count(*) FROM upload_jobs
            WHERE status IN ('QUEUED', 'RUNNING') GROUP BY status
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION br_jobs_finished(seconds integer)
        RETURNS TABLE (status text, jobs bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT status::text, count(*) FROM upload_jobs
            WHERE finished_at > now() - make_interval(secs => seconds) GROUP BY status
        $$
        """
    )
    _grant(FINISHED)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {FINISHED}")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION br_job_counts() RETURNS TABLE (status text, jobs bigint)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT status::text, count(*) FROM upload_jobs GROUP BY status
        $$
        """
    )
    op.create_index("ix_job_row_errors_job_id_code", "job_row_errors", ["job_id", "code"])
    op.drop_index("ix_coupons_issued_to_customer_id", table_name="coupons")
    op.drop_index("ix_upload_jobs_org_id_id", table_name="upload_jobs")
    op.drop_index("ix_upload_jobs_finished_at", table_name="upload_jobs")
