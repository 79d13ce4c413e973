"""What the redemptions' references guarantee, now that triggers keep them (migration 0007).

A redemption's coupon is in the redemption's series and org, and its customer in its org,
whoever writes the row; deleting a coupon or a customer takes its redemptions along, even
while a chunk of the same series is inserting; a redeemed coupon's or customer's keys stay.
Every statement goes straight to Postgres as the owner role, which row-level security lets
see and write every org, so nothing of the service's own code stands in between.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from core.codes import RowError
from core.db import get_engine
from tests.appliers import claimed_applier
from tests.factories import (
    SAMPLE_MS,
    create_coupon,
    create_customer,
    create_job,
    create_series,
)


@pytest.fixture
def owner(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def ref(org: tuple[int, str]) -> dict[str, int]:
    """A series, a customer and a coupon issued to it, all of one org."""
    org_id = org[0]
    series = create_series(org_id, max_redemptions_per_coupon=None, same_user_multiple_redeem=True)
    customer = create_customer(org_id, mobile="919988776611")
    coupon = create_coupon(org_id, series, "REF1", issued_to=customer)
    return {"org_id": org_id, "series_id": series, "coupon_id": coupon, "customer_id": customer}


def another_org(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO orgs (name) VALUES (%s) RETURNING id", (f"refs-{uuid.uuid4().hex[:12]}",)
    ).fetchone()
    assert row is not None
    return int(row[0])


_ms = iter(range(SAMPLE_MS, SAMPLE_MS + 10**9))


def redeem(conn: psycopg.Connection[Any], **values: int) -> None:
    """One redemption of `values` (org, series, coupon, customer), at a time of its own."""
    conn.execute(
        "INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id, redeemed_ms,"
        " till_id) VALUES (%(org_id)s, %(series_id)s, %(coupon_id)s, %(customer_id)s,"
        " %(ms)s, 'T1')",
        {**values, "ms": next(_ms)},
    )


def count(conn: psycopg.Connection[Any], sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def redemptions_of(conn: psycopg.Connection[Any], column: str, value: int) -> int:
    return count(conn, f"SELECT count(*) FROM redemptions WHERE {column} = %s", value)


def refused(conn: psycopg.Connection[Any], constraint: str, write: Callable[[], None]) -> None:
    with pytest.raises(errors.ForeignKeyViolation) as caught, conn.transaction():
        write()
    assert caught.value.diag.constraint_name == constraint


def test_a_redemption_of_its_own_orgs_coupon_and_customer_is_stored(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    redeem(owner, **ref)
    assert redemptions_of(owner, "coupon_id", ref["coupon_id"]) == 1


def test_a_coupon_outside_the_redemptions_series_or_org_is_refused(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    org_id = ref["org_id"]
    other_series = create_series(org_id, name="other")
    elsewhere = create_coupon(org_id, other_series, "ELSEWHERE", issued_to=ref["customer_id"])
    foreign_org = another_org(owner)
    foreign_series = create_series(foreign_org, name="foreign")
    foreign_coupon = create_coupon(foreign_org, foreign_series, "FOREIGN")
    for coupon in (elsewhere, foreign_coupon, 10**15):  # another series, another org, none
        refused(
            owner,
            "br_redemptions_coupon_reference",
            lambda coupon=coupon: redeem(owner, **{**ref, "coupon_id": coupon}),
        )
    # The other org's own redemption of its coupon, in its series, goes through.
    foreign_customer = create_customer(foreign_org, mobile="919988776612")
    redeem(
        owner,
        org_id=foreign_org,
        series_id=foreign_series,
        coupon_id=foreign_coupon,
        customer_id=foreign_customer,
    )
    assert redemptions_of(owner, "coupon_id", foreign_coupon) == 1
    assert redemptions_of(owner, "coupon_id", elsewhere) == 0


def test_a_customer_of_another_org_or_of_none_is_refused(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    foreign_customer = create_customer(another_org(owner), mobile="919988776613")
    for customer in (foreign_customer, 10**15):
        refused(
            owner,
            "br_redemptions_customer_reference",
            lambda customer=customer: redeem(owner, **{**ref, "customer_id": customer}),
        )
    assert redemptions_of(owner, "customer_id", ref["customer_id"]) == 0


def test_one_bad_row_refuses_the_whole_statement(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    # The check is made once a statement, over all its rows: a bulk insert with one dangling
    # customer among good rows stores none of them.
    def bulk() -> None:
        owner.execute(
            """
            INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id, redeemed_ms,
                till_id)
            SELECT %(org_id)s, %(series_id)s, %(coupon_id)s,
                CASE WHEN n = 500 THEN 1000000000000000 ELSE %(customer_id)s END,
                %(ms)s + n, 'T1'
            FROM generate_series(1, 1000) n
            """,
            {**ref, "ms": SAMPLE_MS},
        )

    refused(owner, "br_redemptions_customer_reference", bulk)
    assert redemptions_of(owner, "coupon_id", ref["coupon_id"]) == 0


def test_an_update_cannot_point_a_redemption_elsewhere(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    redeem(owner, **ref)
    foreign_org = another_org(owner)
    foreign_coupon = create_coupon(foreign_org, create_series(foreign_org), "MOVED")
    refused(
        owner,
        "br_redemptions_coupon_reference",
        lambda: owner.execute(
            "UPDATE redemptions SET coupon_id = %s WHERE coupon_id = %s",
            (foreign_coupon, ref["coupon_id"]),
        ),
    )
    refused(
        owner,
        "br_redemptions_customer_reference",
        lambda: owner.execute(
            "UPDATE redemptions SET customer_id = %s WHERE coupon_id = %s",
            (10**15, ref["coupon_id"]),
        ),
    )
    assert redemptions_of(owner, "coupon_id", ref["coupon_id"]) == 1


def test_deleting_a_coupon_deletes_its_redemptions_and_counter(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    keep = create_coupon(ref["org_id"], ref["series_id"], "KEEP", issued_to=ref["customer_id"])
    redeem(owner, **ref)
    redeem(owner, **ref)
    redeem(owner, **{**ref, "coupon_id": keep})
    owner.execute(
        "INSERT INTO coupon_counters (coupon_id, org_id, redemption_count) VALUES (%s, %s, 2)",
        (ref["coupon_id"], ref["org_id"]),
    )
    owner.execute("DELETE FROM coupons WHERE id = %s", (ref["coupon_id"],))
    assert redemptions_of(owner, "coupon_id", ref["coupon_id"]) == 0
    assert (
        count(owner, "SELECT count(*) FROM coupon_counters WHERE coupon_id = %s", ref["coupon_id"])
        == 0
    )
    assert redemptions_of(owner, "coupon_id", keep) == 1


def test_deleting_a_customer_deletes_its_redemptions_only(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    other = create_customer(ref["org_id"], mobile="919988776614")
    redeem(owner, **ref)
    redeem(owner, **{**ref, "customer_id": other})
    owner.execute("DELETE FROM customers WHERE id = %s", (ref["customer_id"],))
    assert redemptions_of(owner, "customer_id", ref["customer_id"]) == 0
    assert redemptions_of(owner, "customer_id", other) == 1


def test_deleting_an_org_leaves_no_redemption_behind(owner: psycopg.Connection[Any]) -> None:
    org_id = another_org(owner)
    series = create_series(org_id, max_redemptions_per_coupon=None)
    customer = create_customer(org_id, mobile="919988776615")
    coupon = create_coupon(org_id, series, "GONE", issued_to=customer)
    ref = {"org_id": org_id, "series_id": series, "coupon_id": coupon, "customer_id": customer}
    redeem(owner, **ref)
    owner.execute("DELETE FROM orgs WHERE id = %s", (org_id,))
    assert count(owner, "SELECT count(*) FROM redemptions WHERE org_id = %s", org_id) == 0


def test_a_coupons_or_customers_keys_never_change(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    other_series = create_series(ref["org_id"], name="move-to")
    unredeemed = create_coupon(ref["org_id"], ref["series_id"], "FREE")
    redeem(owner, **ref)
    # Redeemed or not: a chunk may hold a coupon or customer it found a moment ago.
    for coupon in (ref["coupon_id"], unredeemed):
        with pytest.raises(errors.ForeignKeyViolation), owner.transaction():
            owner.execute("UPDATE coupons SET series_id = %s WHERE id = %s", (other_series, coupon))
    with pytest.raises(errors.ForeignKeyViolation), owner.transaction():
        owner.execute("UPDATE customers SET id = %s WHERE id = %s", (10**15, ref["customer_id"]))
    assert (
        count(owner, "SELECT series_id FROM coupons WHERE id = %s", unredeemed) == ref["series_id"]
    )
    # Their other columns change as before.
    owner.execute("UPDATE coupons SET revoked_at = now() WHERE id = %s", (ref["coupon_id"],))
    owner.execute("UPDATE customers SET name = 'n' WHERE id = %s", (ref["customer_id"],))


def test_coupons_and_customers_cannot_be_truncated_under_redemptions(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    redeem(owner, **ref)
    for table in ("coupons", "customers"):
        with pytest.raises(errors.ForeignKeyViolation), owner.transaction():
            owner.execute(f"TRUNCATE {table} CASCADE")
    assert redemptions_of(owner, "coupon_id", ref["coupon_id"]) == 1


def test_a_cascading_delete_must_run_at_read_committed(
    database_url: str, owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    redeem(owner, **ref)
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("DELETE FROM customers WHERE id = %s", (ref["customer_id"],))
        conn.rollback()
    assert redemptions_of(owner, "customer_id", ref["customer_id"]) == 1


def _waiting_for_a_lock(conn: psycopg.Connection[Any], pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row is not None and row[0] == "Lock":
            return True
        time.sleep(0.02)
    return False


def test_a_customer_deleted_while_a_chunk_inserts_takes_the_chunks_rows_along(
    database_url: str, owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    # The chunk: series lock, insert, not yet committed (core/apply.py's order).
    with psycopg.connect(database_url) as chunk, psycopg.connect(database_url) as deleter:
        chunk.execute(
            "SELECT 1 FROM coupon_series WHERE id = %s FOR NO KEY UPDATE", (ref["series_id"],)
        )
        redeem(chunk, **ref)
        done = threading.Event()

        def delete() -> None:
            deleter.execute("DELETE FROM customers WHERE id = %s", (ref["customer_id"],))
            deleter.commit()
            done.set()

        thread = threading.Thread(target=delete)
        thread.start()
        # The delete waits for the chunk's series lock...
        assert _waiting_for_a_lock(owner, deleter.info.backend_pid)
        assert not done.is_set()
        # ...and does not hold the org's row meanwhile: the chunk's row errors, whose
        # foreign key key-share locks it, still go in (no deadlock).
        chunk.execute("SELECT 1 FROM orgs WHERE id = %s FOR KEY SHARE", (ref["org_id"],))
        chunk.commit()
        thread.join(timeout=10)
        # ...then sees the chunk's rows, and deletes them with the customer.
        assert done.is_set()
    assert redemptions_of(owner, "customer_id", ref["customer_id"]) == 0


# --- the chunk applier, which is spared the per-row check -------------------------------------


@pytest.mark.parametrize(
    ("deleted", "code"),
    [("customers", RowError.CUSTOMER_NOT_FOUND), ("coupons", RowError.COUPON_NOT_FOUND)],
)
def test_a_delete_between_a_chunks_look_ups_and_its_insert_sends_it_looking_again(
    owner: psycopg.Connection[Any], org: tuple[int, str], deleted: str, code: RowError
) -> None:
    org_id = org[0]
    series = create_series(org_id)
    customer = create_customer(org_id, mobile="919988776620")
    coupon = create_coupon(org_id, series, "RACE1", issued_to=customer)
    kept_customer = create_customer(org_id, mobile="919988776621")
    kept_coupon = create_coupon(org_id, series, "RACE2", issued_to=kept_customer)
    job = create_job(
        org_id,
        series,
        [
            "date,till,mobile,code",
            f"{SAMPLE_MS},T1,919988776620,RACE1",
            f"{SAMPLE_MS},T1,919988776621,RACE2",
        ],
    )
    with claimed_applier(job, org_id, series, "test-owner") as applier:
        rows = [
            applier.checker.check(2, [str(SAMPLE_MS), "T1", "919988776620", "RACE1"], None),
            applier.checker.check(3, [str(SAMPLE_MS), "T1", "919988776621", "RACE2"], None),
        ]
        prepared = applier.prepare(applier.conn, rows, first_record=1, end_offset=10, next_record=4)
        # Both rows found their customer and coupon; then one of them goes.
        assert [s.coupon_id for s in prepared.resolved.survivors] == [coupon, kept_coupon]
        gone = customer if deleted == "customers" else coupon
        owner.execute(f"DELETE FROM {deleted} WHERE id = %s", (gone,))
        outcome = applier.commit(prepared)
    assert (outcome.succeeded, outcome.failed) == (1, 1)
    assert outcome.error_counts == {int(code): 1}
    # Nothing points at what was deleted; the other row is applied.
    assert redemptions_of(owner, "coupon_id", coupon) == 0
    assert redemptions_of(owner, "customer_id", customer) == 0
    assert redemptions_of(owner, "coupon_id", kept_coupon) == 1


def test_the_service_role_is_checked_like_anyone_else_unless_its_transaction_vouches(
    owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    # The service's own role, scoped to the org, without the chunk applier's word: a coupon
    # of another series of its own org is refused all the same.
    other_series = create_series(ref["org_id"], name="service-role")
    elsewhere = create_coupon(ref["org_id"], other_series, "SVC", issued_to=ref["customer_id"])
    raw = get_engine().raw_connection()
    try:
        conn = raw.driver_connection
        conn.rollback()
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(ref["org_id"]),))
        with pytest.raises(errors.ForeignKeyViolation) as caught:
            redeem(conn, **{**ref, "coupon_id": elsewhere})
        assert caught.value.diag.constraint_name == "br_redemptions_coupon_reference"
        conn.rollback()
    finally:
        raw.close()
    assert redemptions_of(owner, "coupon_id", elsewhere) == 0


@pytest.mark.parametrize(
    "series_lock_first", [True, False], ids=["a-chunk's-order", "another-writer"]
)
def test_an_insert_after_a_customers_delete_fails_instead_of_leaving_an_orphan(
    database_url: str, owner: psycopg.Connection[Any], ref: dict[str, int], series_lock_first: bool
) -> None:
    # A chunk takes the series lock before it inserts; any other writer is checked as a
    # foreign key would check it. Either way it waits for the delete, then sees the customer
    # gone.
    with psycopg.connect(database_url) as writer, psycopg.connect(database_url) as deleter:
        deleter.execute("DELETE FROM customers WHERE id = %s", (ref["customer_id"],))
        outcome: list[BaseException | None] = []

        def write() -> None:
            try:
                if series_lock_first:
                    writer.execute(
                        "SELECT 1 FROM coupon_series WHERE id = %s FOR NO KEY UPDATE",
                        (ref["series_id"],),
                    )
                redeem(writer, **ref)
                writer.commit()
                outcome.append(None)
            except psycopg.Error as exc:
                writer.rollback()
                outcome.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        assert _waiting_for_a_lock(owner, writer.info.backend_pid)
        deleter.commit()
        thread.join(timeout=10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], errors.ForeignKeyViolation)
    assert redemptions_of(owner, "customer_id", ref["customer_id"]) == 0


def test_no_series_of_the_org_appears_while_one_of_its_customers_is_deleted(
    database_url: str, owner: psycopg.Connection[Any], ref: dict[str, int]
) -> None:
    # The delete counts itself on every series of the org: a series made meanwhile would
    # escape the count, so making one waits for the delete to end.
    with psycopg.connect(database_url) as deleter, psycopg.connect(database_url) as maker:
        deleter.execute("DELETE FROM customers WHERE id = %s", (ref["customer_id"],))
        made: list[int] = []

        def make() -> None:
            row = maker.execute(
                "INSERT INTO coupon_series (org_id, name) VALUES (%s, 'meanwhile') RETURNING id",
                (ref["org_id"],),
            ).fetchone()
            maker.commit()
            assert row is not None
            made.append(int(row[0]))

        thread = threading.Thread(target=make)
        thread.start()
        assert _waiting_for_a_lock(owner, maker.info.backend_pid)
        assert not made
        deleter.commit()
        thread.join(timeout=10)
    assert len(made) == 1
