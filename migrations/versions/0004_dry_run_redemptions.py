"""Dry runs: the redemptions a dry run would have made, for its own later rows to check against.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from core.settings import get_settings

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_ORG = "NULLIF(current_setting('app.org_id', true), '')::bigint"


def upgrade() -> None:
    op.create_table(
        "dry_run_redemptions",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("row_number", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("coupon_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("redeemed_ms", sa.BigInteger(), nullable=False),
        sa.Column("till_id", sa.Text(), nullable=False),
        sa.Column("bill_id", sa.Text(), nullable=False),
        sa.Column("bill_number", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["upload_jobs.id"],
            name=op.f("fk_dry_run_redemptions_job_id_upload_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.id"],
            name=op.f("fk_dry_run_redemptions_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "row_number", name=op.f("pk_dry_run_redemptions")),
    )
    op.create_index(
        "ix_dry_run_redemptions_job_id_coupon_id", "dry_run_redemptions", ["job_id", "coupon_id"]
    )
    op.create_index(
        "ix_dry_run_redemptions_job_id_customer_id",
        "dry_run_redemptions",
        ["job_id", "customer_id"],
    )
    # The same isolation as every tenant table (migration 0002).
    bind = op.get_bind()
    owner = bind.execute(text("SELECT quote_literal(current_user)")).scalar_one()
    role = get_settings().app_db_role.replace('"', '""')
    op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON dry_run_redemptions TO "{role}"')
    op.execute("ALTER TABLE dry_run_redemptions ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE dry_run_redemptions FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY org_isolation ON dry_run_redemptions "
        f"USING (org_id = {CURRENT_ORG} OR current_user = {owner}) "
        f"WITH CHECK (org_id = {CURRENT_ORG} OR current_user = {owner})"
    )

    # A dry run's rows go when its job ends; this catches the ones that ended otherwise (given
    # up by the sweeper, say), across orgs, hence the owner's function.
    op.execute(
        """
        CREATE FUNCTION br_purge_dry_runs() RETURNS bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH gone AS (
                DELETE FROM dry_run_redemptions d USING upload_jobs j
                WHERE j.id = d.job_id
                  AND j.status IN ('COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED')
                RETURNING 1
            )
            SELECT count(*) FROM gone
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION br_purge_dry_runs() FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION br_purge_dry_runs() TO "{role}"')


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS br_purge_dry_runs()")
    op.drop_table("dry_run_redemptions")
