"""Redemptions' references kept by triggers instead of two per-row foreign keys.

The two composite foreign keys of redemptions (to coupons and to customers) checked every
inserted row on its own, and each check locked the coupon and the customer FOR KEY SHARE:
two random heap pages dirtied and WAL-logged a row. On the bench's million rows they cost more
than all the redemptions' indexes together (the lower bound: 59.0 s with them, 38.1 s without;
WAL 1,370 MiB against 770 MiB; bench/README.md). What the keys guaranteed is kept thus:

- deleting coupons or customers deletes their redemptions (the keys' ON DELETE CASCADE). The
  delete first counts itself on the series concerned (`reference_deletions`, a coupon's series,
  or every series of a customer's org, whose row it also locks so that no new series of the
  org appears meanwhile), which waits for the series locks that chunks hold while they insert
  (core/apply.py): a chunk either commits before the delete looks for its rows, or takes the
  lock after it and sees the count moved, and then resolves its rows again. Such deletes run
  at READ COMMITTED only: at a higher level their look for redemptions would not see what
  committed while they waited;
- every redemption's coupon exists in the redemption's series and org, and its customer in its
  org: one set-based check of each statement's new rows (a transition table) after every
  INSERT or UPDATE of redemptions, after share-locking their series as a foreign key's check
  locks what it finds. The chunk applier, which resolved its ids under row-level security
  and the series lock and checked the count above, says so for its transaction
  (`app.references_checked`) and is spared it: 4.7 s of the lower bound's 32.2 s a million
  rows, two index probes a row. Every other writer, the owner included, is checked;
- a coupon's id, series and org, and a customer's id and org, never change (nothing in the
  service moves them; a chunk may hold one it found), and coupons and customers cannot be
  truncated while redemptions exist.

Deleting a coupon now also deletes its counter, which had no key and was left behind.

With nothing locking coupons and customers any more, their pages stay all-visible after a
vacuum, and the look-ups a chunk makes can be index-only: the unique indexes it probes carry
what it reads (INCLUDE). A customer found by mobile, email or external id gives its id from the
index; a coupon found by code gives its id, org (which row-level security reads), owner, expiry
and revocation; the checks above probe (id, org_id) and (id, series_id, org_id). The heaps of
customers and coupons then stay out of a bulk load's working set (the lower bound's million
rows: 38.4 s -> 32.9 s).

The index on (series_id, customer_id) becomes (customer_id, series_id): the per-customer limit
reads it as before, and the cascade from customers can use it too.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Deletes must see what chunks committed while they waited for the series locks: only READ
# COMMITTED takes a new snapshot after the wait.
_READ_COMMITTED_ONLY = """
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'delete % at READ COMMITTED: the cascade to redemptions '
                    'must see redemptions committed while it waited', TG_TABLE_NAME
                    USING ERRCODE = 'feature_not_supported';
            END IF;
"""

# SECURITY DEFINER: the checks see every org (row-level security would hide the very rows a
# cross-org pair names), and compare the orgs themselves.
FUNCTIONS = {
    "br_redemptions_check_references()": """
        CREATE FUNCTION br_redemptions_check_references() RETURNS trigger
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            bad record;
        BEGIN
            IF current_setting('app.references_checked', true) = 'on' THEN
                RETURN NULL;
            END IF;
            -- Like a foreign key's check, wait for deletes in flight (they hold these series
            -- locks) and hold them off until this transaction ends; then look.
            PERFORM 1 FROM coupon_series s
            WHERE s.id IN (SELECT DISTINCT series_id FROM br_new)
            ORDER BY s.id FOR SHARE;
            SELECT n.coupon_id, n.series_id, n.org_id INTO bad FROM br_new n
            WHERE NOT EXISTS (
                SELECT 1 FROM coupons k
                WHERE k.id = n.coupon_id AND k.series_id = n.series_id AND k.org_id = n.org_id
            )
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'redemption of coupon % that is not in series % of org %',
                    bad.coupon_id, bad.series_id, bad.org_id
                    USING ERRCODE = 'foreign_key_violation',
                        CONSTRAINT = 'br_redemptions_coupon_reference';
            END IF;
            SELECT n.customer_id, n.org_id INTO bad FROM br_new n
            WHERE NOT EXISTS (
                SELECT 1 FROM customers c WHERE c.id = n.customer_id AND c.org_id = n.org_id
            )
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'redemption by customer % that is not in org %',
                    bad.customer_id, bad.org_id
                    USING ERRCODE = 'foreign_key_violation',
                        CONSTRAINT = 'br_redemptions_customer_reference';
            END IF;
            RETURN NULL;
        END
        $$
    """,
    "br_coupons_cascade_redemptions()": """
        CREATE FUNCTION br_coupons_cascade_redemptions() RETURNS trigger
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN"""
    + _READ_COMMITTED_ONLY
    + """
            -- Waits for the chunks inserting into these series; later ones see the count move.
            PERFORM 1 FROM coupon_series s
            WHERE s.id IN (SELECT DISTINCT series_id FROM br_old)
            ORDER BY s.id FOR NO KEY UPDATE;
            UPDATE coupon_series SET reference_deletions = reference_deletions + 1
            WHERE id IN (SELECT DISTINCT series_id FROM br_old);
            DELETE FROM redemptions r USING br_old o WHERE r.coupon_id = o.id;
            DELETE FROM coupon_counters c USING br_old o WHERE c.coupon_id = o.id;
            RETURN NULL;
        END
        $$
    """,
    "br_customers_cascade_redemptions()": """
        CREATE FUNCTION br_customers_cascade_redemptions() RETURNS trigger
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN"""
    + _READ_COMMITTED_ONLY
    + """
            -- A customer redeems in any series of its org. Its series first (waiting for
            -- their chunks, which may hold the org's row too, as job_row_errors' key locks
            -- it), then the org's row FOR UPDATE, which holds off new series of the org
            -- (their foreign key waits for it), then the series again: any made meanwhile.
            -- A chunk of such a series caught between the two may deadlock with the delete;
            -- Postgres then ends one of them, and the chunk is retried or the delete re-run.
            PERFORM 1 FROM coupon_series s
            WHERE s.org_id IN (SELECT DISTINCT org_id FROM br_old)
            ORDER BY s.id FOR NO KEY UPDATE;
            PERFORM 1 FROM orgs WHERE id IN (SELECT DISTINCT org_id FROM br_old)
            ORDER BY id FOR UPDATE;
            PERFORM 1 FROM coupon_series s
            WHERE s.org_id IN (SELECT DISTINCT org_id FROM br_old)
            ORDER BY s.id FOR NO KEY UPDATE;
            UPDATE coupon_series SET reference_deletions = reference_deletions + 1
            WHERE org_id IN (SELECT DISTINCT org_id FROM br_old);
            DELETE FROM redemptions r USING br_old o
            WHERE r.customer_id = o.id AND r.org_id = o.org_id;
            RETURN NULL;
        END
        $$
    """,
    "br_refuse_rekeying()": """
        CREATE FUNCTION br_refuse_rekeying() RETURNS trigger
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            -- Nothing in the service moves a coupon or a customer; a chunk may have found
            -- this one already, and redemptions may name it. Make a new one instead.
            RAISE EXCEPTION '% %: its id, org and series cannot change', TG_TABLE_NAME, OLD.id
                USING ERRCODE = 'foreign_key_violation';
        END
        $$
    """,
    "br_refuse_truncating_redeemed()": """
        CREATE FUNCTION br_refuse_truncating_redeemed() RETURNS trigger
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM redemptions) THEN
                RAISE EXCEPTION 'truncate redemptions before %', TG_TABLE_NAME
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NULL;
        END
        $$
    """,
}

TRIGGERS = (
    # (name, table): dropped on the way down.
    ("br_redemptions_references_insert", "redemptions"),
    ("br_redemptions_references_update", "redemptions"),
    ("br_coupons_cascade_redemptions", "coupons"),
    ("br_customers_cascade_redemptions", "customers"),
    ("br_coupons_keys", "coupons"),
    ("br_customers_keys", "customers"),
    ("br_coupons_truncate", "coupons"),
    ("br_customers_truncate", "customers"),
)


def _recreate_unique(table: str, columns: list[str], include: list[str]) -> None:
    """The unique constraint on `columns`, under its name, built anew with `include`."""
    name = f"uq_{table}_{'_'.join(columns)}"
    op.drop_constraint(name, table, type_="unique")
    covering = f" INCLUDE ({', '.join(include)})" if include else ""
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({', '.join(columns)}){covering}")


def upgrade() -> None:
    op.add_column(
        "coupon_series",
        sa.Column("reference_deletions", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.drop_constraint("fk_redemptions_coupon_id_coupons", "redemptions", type_="foreignkey")
    op.drop_constraint("fk_redemptions_customer_id_customers", "redemptions", type_="foreignkey")
    for column in ("mobile", "email", "external_id"):
        _recreate_unique("customers", ["org_id", column], include=["id"])
    _recreate_unique(
        "coupons",
        ["series_id", "code"],
        include=["id", "org_id", "issued_to_customer_id", "expires_at", "revoked_at"],
    )
    op.drop_index("ix_redemptions_series_id_customer_id", table_name="redemptions")
    op.create_index(
        "ix_redemptions_customer_id_series_id", "redemptions", ["customer_id", "series_id"]
    )
    for signature, body in FUNCTIONS.items():
        op.execute(body)
        # Trigger functions run as their owner whoever fires them: nobody calls them directly.
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    # A trigger with a transition table serves one event only: one for INSERT, one for UPDATE.
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER br_redemptions_references_{event.lower()} AFTER {event} "
            "ON redemptions REFERENCING NEW TABLE AS br_new FOR EACH STATEMENT "
            "EXECUTE FUNCTION br_redemptions_check_references()"
        )
    op.execute(
        "CREATE TRIGGER br_coupons_cascade_redemptions AFTER DELETE ON coupons "
        "REFERENCING OLD TABLE AS br_old FOR EACH STATEMENT "
        "EXECUTE FUNCTION br_coupons_cascade_redemptions()"
    )
    op.execute(
        "CREATE TRIGGER br_customers_cascade_redemptions AFTER DELETE ON customers "
        "REFERENCING OLD TABLE AS br_old FOR EACH STATEMENT "
        "EXECUTE FUNCTION br_customers_cascade_redemptions()"
    )
    op.execute(
        "CREATE TRIGGER br_coupons_keys BEFORE UPDATE OF id, series_id, org_id ON coupons "
        "FOR EACH ROW WHEN (OLD.id <> NEW.id OR OLD.series_id <> NEW.series_id "
        "OR OLD.org_id <> NEW.org_id) EXECUTE FUNCTION br_refuse_rekeying()"
    )
    op.execute(
        "CREATE TRIGGER br_customers_keys BEFORE UPDATE OF id, org_id ON customers "
        "FOR EACH ROW WHEN (OLD.id <> NEW.id OR OLD.org_id <> NEW.org_id) "
        "EXECUTE FUNCTION br_refuse_rekeying()"
    )
    for table in ("coupons", "customers"):
        op.execute(
            f"CREATE TRIGGER br_{table}_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION br_refuse_truncating_redeemed()"
        )


def downgrade() -> None:
    for name, table in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.drop_index("ix_redemptions_customer_id_series_id", table_name="redemptions")
    op.create_index(
        "ix_redemptions_series_id_customer_id", "redemptions", ["series_id", "customer_id"]
    )
    for column in ("mobile", "email", "external_id"):
        _recreate_unique("customers", ["org_id", column], include=[])
    _recreate_unique("coupons", ["series_id", "code"], include=[])
    op.create_foreign_key(
        "fk_redemptions_customer_id_customers",
        "redemptions",
        "customers",
        ["customer_id", "org_id"],
        ["id", "org_id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "fk_redemptions_coupon_id_coupons",
        "redemptions",
        "coupons",
        ["coupon_id", "series_id", "org_id"],
        ["id", "series_id", "org_id"],
        ondelete="CASCADE",
    )
    op.drop_column("coupon_series", "reference_deletions")
