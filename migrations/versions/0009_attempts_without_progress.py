"""A lost job counts only its losses without progress, retries after a backoff, and is never
judged lost while its holder is inside a chunk.

Until now every loss of a job's lease counted toward `BULKREDEEM_MAX_ATTEMPTS`, so a Postgres
restart or failover, which ends every backend at once, cost every running job an attempt, and a
few of them in a day failed healthy jobs. A loss now counts only when the job committed no
chunk since its previous loss (`lost_at_record`, its checkpoint then, is where it still is):
`stalled_losses` is how many times in a row the job was lost there. A job lost that many times
at the same record, as often as the setting allows, fails, its reason naming the record it
could not get past. Between such losses the next attempt waits (`retry_after`): nothing after a
first loss, then the lease's length, doubling each time, with a cap.

The sweeper judged a lease by its transaction's start (`now()`), and its step that fails a job
waited for the job row's lock, which a chunk holds until it commits and renews the lease, and
then judged the renewed lease with its earlier clock: a healthy job whose chunk outlasted the
lease was failed as it committed. Now it passes over rows it cannot lock at once (a holder
inside a chunk is not lost: its chunk ends by committing, renewing the lease, or by Postgres
ending its session) and judges by the clock at the moment it has the row (`clock_timestamp()`).

Only the sweeper turns a lapsed lease into a loss (the claim takes a job only once its previous
holder's loss is recorded), so the rule lives in this one function.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.settings import get_settings

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_SIGNATURE = "br_sweep(integer, double precision)"
SIGNATURE = "br_sweep(integer, double precision, double precision, double precision)"

SWEEP = """
CREATE FUNCTION br_sweep(p_max_attempts integer, p_stale_seconds double precision,
                         p_backoff_seconds double precision, p_backoff_max_seconds double precision)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    lost record;
BEGIN
    -- Leases that lapsed, on rows nobody holds locked: a holder inside a chunk keeps its job
    -- row locked until the chunk commits (and renews the lease), so it is passed over, not
    -- waited for. The row is judged as it is once locked, by the clock at that moment.
    FOR lost IN
        SELECT id, next_record, rows_processed, failure_reason,
            CASE WHEN lost_at_record = next_record THEN stalled_losses + 1 ELSE 1 END AS losses
        FROM upload_jobs
        WHERE status = 'RUNNING' AND lease_owner IS NOT NULL
          AND lease_expires_at < clock_timestamp()
        ORDER BY id
        FOR NO KEY UPDATE SKIP LOCKED
    LOOP
        IF lost.losses >= p_max_attempts THEN
            UPDATE upload_jobs SET status = 'FAILED',
                failure_reason = format(
                    'stopped %s times at data record %s (row %s of the file) without getting '
                    'past it (its worker crashed, timed out or failed there each time); giving up',
                    lost.losses, to_char(lost.rows_processed + 1, 'FM999,999,999,990'),
                    to_char(lost.next_record, 'FM999,999,999,990'))
                    || coalesce('. Last error: ' || lost.failure_reason, ''),
                finished_at = clock_timestamp(), updated_at = clock_timestamp(),
                lease_owner = NULL, lease_expires_at = NULL, retry_after = NULL,
                stalled_losses = lost.losses, lost_at_record = lost.next_record
            WHERE id = lost.id;
            DELETE FROM dry_run_redemptions WHERE job_id = lost.id;
        ELSE
            UPDATE upload_jobs SET
                lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp(),
                stalled_losses = lost.losses, lost_at_record = lost.next_record,
                -- The first loss at a record retries at once; then lease, 2 x lease, ...
                retry_after = clock_timestamp() + make_interval(secs => CASE
                    WHEN lost.losses = 1 THEN 0
                    ELSE least(p_backoff_seconds * 2 ^ (lost.losses - 2), p_backoff_max_seconds)
                END)
            WHERE id = lost.id;
        END IF;
    END LOOP;

    -- Jobs nobody holds that want a message: a retry come due since the job was last
    -- enqueued, or a message that may have been lost (queued or handed on, and untaken a while).
    RETURN QUERY
    UPDATE upload_jobs SET enqueued_at = clock_timestamp()
    WHERE id IN (
        SELECT id FROM upload_jobs
        WHERE status IN ('QUEUED', 'RUNNING') AND lease_owner IS NULL
          AND (retry_after IS NULL OR retry_after <= clock_timestamp())
          AND coalesce(enqueued_at, created_at) < greatest(
              retry_after, clock_timestamp() - make_interval(secs => p_stale_seconds))
        ORDER BY id
        FOR NO KEY UPDATE SKIP LOCKED
    )
    RETURNING id;
END
$$
"""

# 0002's, for the downgrade.
OLD_SWEEP = """
CREATE FUNCTION br_sweep(p_max_attempts integer, p_stale_seconds double precision)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE upload_jobs SET status = 'FAILED', finished_at = now(), updated_at = now(),
        failure_reason = 'the job was lost ' || attempts || ' times (worker crashed, '
            || 'timed out or failed); giving up'
            || coalesce('. Last error: ' || failure_reason, ''),
        lease_owner = NULL, lease_expires_at = NULL
    WHERE status = 'RUNNING' AND lease_expires_at < now()
      AND attempts >= p_max_attempts;
    RETURN QUERY
    UPDATE upload_jobs SET enqueued_at = now()
    WHERE id IN (
        SELECT id FROM upload_jobs
        WHERE status IN ('QUEUED', 'RUNNING')
          AND (lease_expires_at IS NULL OR lease_expires_at < now())
          AND (
            coalesce(enqueued_at, created_at)
                < now() - make_interval(secs => p_stale_seconds)
            OR coalesce(enqueued_at, created_at) < lease_expires_at
          )
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id;
END
$$
"""


def _grant(signature: str) -> None:
    role = get_settings().app_db_role.replace('"', '""')
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def upgrade() -> None:
    op.add_column("upload_jobs", sa.Column("retry_after", sa.DateTime(timezone=True)))
    op.add_column(
        "upload_jobs",
        sa.Column("stalled_losses", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("upload_jobs", sa.Column("lost_at_record", sa.BigInteger()))
    op.execute(f"DROP FUNCTION {OLD_SIGNATURE}")
    op.execute(SWEEP)
    _grant(SIGNATURE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute(OLD_SWEEP)
    _grant(OLD_SIGNATURE)
    op.drop_column("upload_jobs", "lost_at_record")
    op.drop_column("upload_jobs", "stalled_losses")
    op.drop_column("upload_jobs", "retry_after")
