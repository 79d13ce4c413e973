"""Drop the unique constraint on redemptions (job_id, row_number).

It was to make a chunk applied twice fail instead of redeeming twice. The natural key does that
already: a row of a file, applied again, is the same coupon, time, till and bill, and
`uq_redemptions_natural_key` refuses it whichever job brings it; what keeps a chunk from being
applied twice at all is its checkpoint, committed with it under the job's lease. No query looks
redemptions up by job and row. Keeping its index cost the lower bound 2 s of a million rows
(bench/README.md).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("uq_redemptions_job_id_row_number", "redemptions", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint(
        "uq_redemptions_job_id_row_number", "redemptions", ["job_id", "row_number"]
    )
