"""Redemptions found by their job, and what a revert removed.

- `ix_redemptions_job_id_row_number`: a job's redemptions in file order, for its successes
  report (keyset pages by row number) and for a revert, which walks them chunk by chunk.
- `reverted_redemptions`: every redemption a revert removed, as it was, with the revert job and
  when (DESIGN.md, Revert: nothing is lost). The import's successes report reads its rows from
  here once reverted, marked with `reverted_by_job_id`. A tenant table like the others.
- A revert job has no file of its own: `storage_key` is empty for it (its other file columns
  copy the import's, so that its document names the file it undoes), and nothing else may be.
- At most one revert of an import that has not failed: a second request names the first.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

from core.settings import get_settings

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_ORG = "NULLIF(current_setting('app.org_id', true), '')::bigint"


def upgrade() -> None:
    op.create_index("ix_redemptions_job_id_row_number", "redemptions", ["job_id", "row_number"])
    op.create_check_constraint(
        "only_reverts_have_no_file", "upload_jobs", "(kind = 'REVERT') = (storage_key = '')"
    )
    op.create_index(
        "ux_upload_jobs_one_revert",
        "upload_jobs",
        ["reverts_job_id"],
        unique=True,
        postgresql_where=sa.text("reverts_job_id IS NOT NULL AND status <> 'FAILED'"),
    )

    op.create_table(
        "reverted_redemptions",
        # The redemption's own id, kept: the successes report shows it as it was.
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("series_id", sa.BigInteger(), nullable=False),
        sa.Column("coupon_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.Column("redeemed_ms", sa.BigInteger(), nullable=False),
        sa.Column("till_id", sa.Text(), nullable=False),
        sa.Column("bill_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("bill_number", sa.Text(), nullable=False, server_default=""),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reverted_by_job_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "reverted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.id"],
            name=op.f("fk_reverted_redemptions_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reverted_by_job_id"],
            ["upload_jobs.id"],
            name=op.f("fk_reverted_redemptions_reverted_by_job_id_upload_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reverted_redemptions")),
    )
    op.create_index(
        "ix_reverted_redemptions_job_id_row_number",
        "reverted_redemptions",
        ["job_id", "row_number"],
    )
    op.create_index(
        "ix_reverted_redemptions_reverted_by_job_id",
        "reverted_redemptions",
        ["reverted_by_job_id"],
    )

    # The same isolation as every tenant table (migrations 0002, 0004, 0005).
    bind = op.get_bind()
    owner = bind.execute(text("SELECT quote_literal(current_user)")).scalar_one()
    role = '"' + get_settings().app_db_role.replace('"', '""') + '"'
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON reverted_redemptions TO {role}")
    op.execute("ALTER TABLE reverted_redemptions ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE reverted_redemptions FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY org_isolation ON reverted_redemptions "
        f"USING (org_id = {CURRENT_ORG} OR current_user = {owner}) "
        f"WITH CHECK (org_id = {CURRENT_ORG} OR current_user = {owner})"
    )


def downgrade() -> None:
    op.drop_table("reverted_redemptions")
    op.drop_index("ux_upload_jobs_one_revert", table_name="upload_jobs")
    op.drop_constraint("ck_upload_jobs_only_reverts_have_no_file", "upload_jobs")
    op.drop_index("ix_redemptions_job_id_row_number", table_name="redemptions")
