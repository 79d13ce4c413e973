"""Drop the unique constraint on redemptions (job_id, row_number).

It was the backstop against a chunk applied twice. What keeps a chunk from being applied twice
now is its checkpoint: a chunk commits only under the job's lease and only if the job's
`next_record` is where the chunk starts (core/apply.py), in the transaction that moves it on;
a chunk applied again, or after a gap, commits nothing. (The natural key would refuse a raw
insert of the same rows again, but the chunk applier would turn them into 790 failures first.)
No query looks redemptions up by job and row. Keeping its index cost the lower bound 1.9 s of
a million rows (bench/README.md).

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
