"""Row-level security: the service's own role, org policies on every tenant table, and the
few cross-org operations as SECURITY DEFINER functions.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from core.settings import get_settings

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = (
    "api_keys",
    "customers",
    "coupon_series",
    "coupons",
    "coupon_counters",
    "redemptions",
    "upload_jobs",
    "job_row_errors",
)
CURRENT_ORG = "NULLIF(current_setting('app.org_id', true), '')::bigint"

FUNCTIONS = {
    "br_key_lookup(text)": """
        CREATE FUNCTION br_key_lookup(p_prefix text)
        RETURNS TABLE (key_id bigint, org_id bigint, key_hash text, last_used_at timestamptz)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT id, org_id, key_hash, last_used_at FROM api_keys
            WHERE prefix = p_prefix AND revoked_at IS NULL
        $$
    """,
    "br_job_org(bigint)": """
        CREATE FUNCTION br_job_org(p_job_id bigint) RETURNS bigint
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT org_id FROM upload_jobs WHERE id = p_job_id
        $$
    """,
    "br_sweep(integer, double precision)": """
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
                    -- a lease that lapsed since the last enqueue: at once, not in a while
                    OR coalesce(enqueued_at, created_at) < lease_expires_at
                  )
                ORDER BY id
                FOR UPDATE SKIP LOCKED
            )
            RETURNING id;
        END
        $$
    """,
    "br_files_to_purge(integer, integer)": """
        CREATE FUNCTION br_files_to_purge(p_days integer, p_batch integer)
        RETURNS TABLE (job_id bigint, storage_key text)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT id, storage_key FROM upload_jobs
            WHERE file_deleted_at IS NULL
              AND status IN ('COMPLETED', 'COMPLETED_WITH_ERRORS', 'FAILED', 'CANCELLED')
              AND finished_at < now() - make_interval(days => p_days)
            ORDER BY id LIMIT p_batch
            FOR UPDATE SKIP LOCKED
        $$
    """,
    "br_files_purged(bigint[])": """
        CREATE FUNCTION br_files_purged(p_ids bigint[]) RETURNS void
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            UPDATE upload_jobs SET file_deleted_at = now() WHERE id = ANY(p_ids)
        $$
    """,
}


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def upgrade() -> None:
    settings = get_settings()
    role = settings.app_db_role
    bind = op.get_bind()
    owner = bind.execute(text("SELECT current_user")).scalar_one()
    exists = bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    password = (
        bind.execute(text("SELECT quote_literal(:p)"), {"p": settings.app_db_password}).scalar_one()
        if settings.app_db_password
        else None
    )
    ident = _quote_ident(role)
    if exists is None:
        op.execute(
            f"CREATE ROLE {ident} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            + (f" PASSWORD {password}" if password else "")
        )
    else:
        # Roles are cluster-wide: another database may have made it. Make sure of its powers.
        op.execute(f"ALTER ROLE {ident} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
        if password:
            op.execute(f"ALTER ROLE {ident} PASSWORD {password}")

    database = bind.execute(text("SELECT current_database()")).scalar_one()
    op.execute(f"GRANT CONNECT ON DATABASE {_quote_ident(database)} TO {ident}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
    op.execute(f"GRANT TEMPORARY ON DATABASE {_quote_ident(database)} TO {ident}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TENANT_TABLES)} TO {ident}")
    op.execute(f"GRANT SELECT ON orgs TO {ident}")  # orgs are made and removed by the owner
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ident}")

    # The owner (who migrates and administers) sees every org; everyone else only the org
    # their transaction set. FORCE: even the owner's own sessions go through the policy.
    everyone_else = f"{CURRENT_ORG}"
    owner_literal = bind.execute(text("SELECT quote_literal(:o)"), {"o": owner}).scalar_one()
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY org_isolation ON {table} "
            f"USING (org_id = {everyone_else} OR current_user = {owner_literal}) "
            f"WITH CHECK (org_id = {everyone_else} OR current_user = {owner_literal})"
        )
    op.execute("ALTER TABLE orgs ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE orgs FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY org_isolation ON orgs "
        f"USING (id = {everyone_else} OR current_user = {owner_literal}) "
        f"WITH CHECK (current_user = {owner_literal})"
    )

    # Keys are found by their visible prefix, then told apart by a constant-time comparison.
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])

    for signature, body in FUNCTIONS.items():
        op.execute(body)
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {ident}")


def downgrade() -> None:
    role = _quote_ident(get_settings().app_db_role)
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.drop_index("ix_api_keys_prefix", "api_keys")
    for table in ("orgs", *TENANT_TABLES):
        op.execute(f"DROP POLICY IF EXISTS org_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    tables = ", ".join(("orgs", *TENANT_TABLES))
    op.execute(f"REVOKE ALL ON {tables} FROM {role}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
    # The role itself stays: it is cluster-wide and other databases may use it.
