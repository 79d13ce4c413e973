"""Who uploaded a job, what kind of job it is, its guard; and the org's own settings.

- `upload_jobs.kind`: `IMPORT` (an upload) or `REVERT` (a job that undoes an import, which
  `reverts_job_id` names).
- `upload_jobs.uploaded_by_key_id` / `uploaded_by_label`: the API key that made the job, and
  its label as it was then (a key revoked or relabelled later does not rewrite history; a key
  deleted leaves its label).
- `upload_jobs.max_error_rate`: the share of failed rows (0 to 1) above which the job stops
  (DESIGN.md, "Guards against a wrong upload"); NULL: no guard.
- `orgs.default_country_code`, `orgs.time_zone`, `orgs.default_max_error_rate`: the settings of
  `GET/PATCH /v1/org`. The app role may update only these columns of its own org: the grant
  names the columns, and the policy `org_isolation` now checks an updated row as it reads
  one (its own org), where it let only the owner write.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.settings import get_settings

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORG_SETTINGS = ("default_country_code", "time_zone", "default_max_error_rate")
CURRENT_ORG = "NULLIF(current_setting('app.org_id', true), '')::bigint"


def upgrade() -> None:
    op.add_column(
        "upload_jobs",
        sa.Column("kind", sa.String(16), nullable=False, server_default="IMPORT"),
    )
    op.create_check_constraint("kind_known", "upload_jobs", "kind IN ('IMPORT', 'REVERT')")
    op.add_column(
        "upload_jobs",
        sa.Column(
            "reverts_job_id",
            sa.BigInteger,
            sa.ForeignKey("upload_jobs.id", ondelete="CASCADE"),
            nullable=True,
        ),
    )
    op.create_check_constraint(
        "revert_names_its_import",
        "upload_jobs",
        "(kind = 'REVERT') = (reverts_job_id IS NOT NULL)",
    )
    op.add_column(
        "upload_jobs",
        sa.Column(
            "uploaded_by_key_id",
            sa.BigInteger,
            sa.ForeignKey("api_keys.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.add_column("upload_jobs", sa.Column("uploaded_by_label", sa.Text, nullable=True))
    op.add_column("upload_jobs", sa.Column("max_error_rate", sa.Float, nullable=True))
    op.create_check_constraint(
        "max_error_rate_share",
        "upload_jobs",
        "max_error_rate BETWEEN 0 AND 1",
    )

    op.add_column("orgs", sa.Column("default_country_code", sa.String(4), nullable=True))
    op.add_column("orgs", sa.Column("time_zone", sa.Text, nullable=True))
    op.add_column("orgs", sa.Column("default_max_error_rate", sa.Float, nullable=True))
    op.create_check_constraint(
        "default_max_error_rate_share", "orgs", "default_max_error_rate BETWEEN 0 AND 1"
    )
    role = get_settings().app_db_role.replace('"', '""')
    op.execute(f'GRANT UPDATE ({", ".join(ORG_SETTINGS)}) ON orgs TO "{role}"')
    # The grant alone is not enough: an UPDATE's new row must pass WITH CHECK, which let only
    # the owner write (migration 0002). The app role has no INSERT on orgs, so this opens
    # nothing but the update of those columns of the org its transaction set.
    owner = op.get_bind().execute(sa.text("SELECT quote_literal(current_user)")).scalar_one()
    op.execute(
        "ALTER POLICY org_isolation ON orgs"
        f" WITH CHECK (id = {CURRENT_ORG} OR current_user = {owner})"
    )


def downgrade() -> None:
    role = get_settings().app_db_role.replace('"', '""')
    owner = op.get_bind().execute(sa.text("SELECT quote_literal(current_user)")).scalar_one()
    op.execute(f"ALTER POLICY org_isolation ON orgs WITH CHECK (current_user = {owner})")
    op.execute(f'REVOKE UPDATE ({", ".join(ORG_SETTINGS)}) ON orgs FROM "{role}"')
    # Dropping a column drops its check constraints and foreign keys with it.
    for column in reversed(ORG_SETTINGS):
        op.drop_column("orgs", column)
    for column in ("max_error_rate", "uploaded_by_label", "uploaded_by_key_id", "reverts_job_id"):
        op.drop_column("upload_jobs", column)
    op.drop_column("upload_jobs", "kind")
