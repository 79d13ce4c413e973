"""Completion webhooks: the org's signing secret, one delivery row per ended job with a
callbackUrl (made by a trigger, whichever way the job ended), and the sweeper's function.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from core.settings import get_settings

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_ORG = "NULLIF(current_setting('app.org_id', true), '')::bigint"
TERMINAL = "('COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED')"

FUNCTIONS = {
    # A job ends in many places (the worker finishing, a cancel at a chunk boundary or while
    # queued, the sweeper giving up): a trigger in the ending transaction misses none of them.
    # SECURITY DEFINER so that it never depends on the org the ending transaction has set.
    "br_job_ended()": """
        CREATE FUNCTION br_job_ended() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            INSERT INTO webhook_deliveries (job_id, org_id, url)
            VALUES (NEW.id, NEW.org_id, NEW.callback_url)
            ON CONFLICT (job_id) DO NOTHING;
            RETURN NULL;
        END
        $$
    """,
    # The org's secret, made from the caller's candidate if it has none yet: the service's
    # role may read its own org but not write it. Only for the org the transaction set.
    "br_org_webhook_secret(bigint, text)": f"""
        CREATE FUNCTION br_org_webhook_secret(p_org bigint, p_candidate text) RETURNS text
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            UPDATE orgs SET webhook_secret = coalesce(webhook_secret, p_candidate)
            WHERE id = p_org AND id = {CURRENT_ORG}
            RETURNING webhook_secret
        $$
    """,
    # Deliveries whose doorbell was never rung or got lost (Redis flushed), and attempts
    # whose worker died: due for longer than the grace, and not rung again within it.
    "br_webhooks_due(double precision)": """
        CREATE FUNCTION br_webhooks_due(p_grace_seconds double precision)
        RETURNS SETOF bigint
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            UPDATE webhook_deliveries SET enqueued_at = now()
            WHERE job_id IN (
                SELECT job_id FROM webhook_deliveries
                WHERE (
                    (state = 'pending' AND enqueued_at IS NULL AND next_attempt_at <= now())
                    OR (
                      (enqueued_at IS NULL
                       OR enqueued_at < now() - make_interval(secs => p_grace_seconds))
                      AND (
                        (state = 'pending' AND next_attempt_at
                            < now() - make_interval(secs => p_grace_seconds))
                        OR (state = 'delivering' AND lease_expires_at < now())
                      )
                    )
                )
                ORDER BY job_id
                LIMIT 1000
                FOR UPDATE SKIP LOCKED
            )
            RETURNING job_id
        $$
    """,
}


def upgrade() -> None:
    op.add_column("orgs", sa.Column("webhook_secret", sa.Text(), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column(
            "attempts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivering', 'delivered', 'failed')",
            name=op.f("ck_webhook_deliveries_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["upload_jobs.id"],
            name=op.f("fk_webhook_deliveries_job_id_upload_jobs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.id"],
            name=op.f("fk_webhook_deliveries_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_open",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state IN ('pending', 'delivering')"),
    )

    # The same isolation as every tenant table (migrations 0002, 0004).
    bind = op.get_bind()
    owner = bind.execute(text("SELECT quote_literal(current_user)")).scalar_one()
    role = '"' + get_settings().app_db_role.replace('"', '""') + '"'
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries TO {role}")
    op.execute("ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY org_isolation ON webhook_deliveries "
        f"USING (org_id = {CURRENT_ORG} OR current_user = {owner}) "
        f"WITH CHECK (org_id = {CURRENT_ORG} OR current_user = {owner})"
    )

    for signature, body in FUNCTIONS.items():
        op.execute(body)
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        if signature != "br_job_ended()":  # a trigger's function: nobody calls it
            op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {role}")
    op.execute(
        f"""
        CREATE TRIGGER upload_jobs_ended_webhook AFTER UPDATE OF status ON upload_jobs
        FOR EACH ROW
        WHEN (NEW.callback_url IS NOT NULL AND NEW.status IN {TERMINAL}
              AND OLD.status NOT IN {TERMINAL})
        EXECUTE FUNCTION br_job_ended()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS upload_jobs_ended_webhook ON upload_jobs")
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.drop_index("ix_webhook_deliveries_open", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_column("orgs", "webhook_secret")
