"""The database itself refuses what must never be stored twice, whatever Python gets wrong.

Every insert here goes straight to Postgres as the owner role (which row-level security lets
write any org), so no check in the service's code stands between the row and the constraint.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series


@pytest.fixture
def owner(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the owner; each statement below runs in a transaction of its own."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def insert(conn: psycopg.Connection[Any], table: str, **values: object) -> None:
    columns = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))


def refused(
    conn: psycopg.Connection[Any],
    error: type[errors.IntegrityError],
    constraint: str,
    table: str,
    **values: object,
) -> None:
    """The insert fails with `error`, and it is `constraint` that refuses it."""
    with pytest.raises(error) as caught:
        insert(conn, table, **values)
    assert caught.value.diag.constraint_name == constraint


def another_org(conn: psycopg.Connection[Any]) -> int:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO orgs (name) VALUES (%s) RETURNING id", (f"other-{uuid.uuid4().hex[:12]}",)
        ).fetchone()
    assert row is not None
    return int(row[0])


def count(conn: psycopg.Connection[Any], sql: str, *params: object) -> int:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("mobile", "919988776655", "uq_customers_org_id_mobile"),
        ("email", "someone@example.com", "uq_customers_org_id_email"),
        ("external_id", "EXT-1", "uq_customers_org_id_external_id"),
    ],
    ids=["mobile", "email", "external-id"],
)
def test_two_customers_of_one_org_cannot_share_an_identifier(
    owner: psycopg.Connection[Any], org: tuple[int, str], column: str, value: str, constraint: str
) -> None:
    org_id = org[0]
    insert(owner, "customers", org_id=org_id, **{column: value})
    refused(
        owner, errors.UniqueViolation, constraint, "customers", org_id=org_id, **{column: value}
    )
    # Another org is another namespace: it may hold the same identifier.
    other = another_org(owner)
    insert(owner, "customers", org_id=other, **{column: value})
    # Counted in the two orgs only: other tests' orgs in this database may hold it too.
    same = f"SELECT count(*) FROM customers WHERE {column} = %s AND org_id IN (%s, %s)"
    assert count(owner, same, value, org_id, other) == 2


def test_customers_without_an_identifier_do_not_collide(
    owner: psycopg.Connection[Any], org: tuple[int, str]
) -> None:
    # NULLs are distinct in a unique constraint: a customer known by mobile only and one
    # known by email only have no email / mobile in common.
    insert(owner, "customers", org_id=org[0], mobile="919988776600")
    insert(owner, "customers", org_id=org[0], mobile="919988776601")
    assert count(owner, "SELECT count(*) FROM customers WHERE org_id = %s", org[0]) == 2


def test_a_coupon_code_is_unique_within_its_series_only(
    owner: psycopg.Connection[Any], org: tuple[int, str]
) -> None:
    org_id = org[0]
    series = create_series(org_id, name="first")
    insert(owner, "coupons", org_id=org_id, series_id=series, code="SAME")
    refused(
        owner,
        errors.UniqueViolation,
        "uq_coupons_series_id_code",
        "coupons",
        org_id=org_id,
        series_id=series,
        code="SAME",
    )
    second = create_series(org_id, name="second")
    insert(owner, "coupons", org_id=org_id, series_id=second, code="SAME")
    assert count(owner, "SELECT count(*) FROM coupons WHERE org_id = %s", org_id) == 2


@pytest.fixture
def redeemable(org: tuple[int, str]) -> dict[str, int]:
    """What a redemption row points at: org, series, coupon, customer."""
    org_id = org[0]
    series = create_series(org_id, max_redemptions_per_coupon=None, same_user_multiple_redeem=True)
    customer = create_customer(org_id, mobile="919988776655")
    coupon = create_coupon(org_id, series, "MULTI", issued_to=customer)
    return {"org_id": org_id, "series_id": series, "coupon_id": coupon, "customer_id": customer}


def job_ids(n: int) -> list[int]:
    """Job ids no real job of this test run has (redemptions.job_id has no foreign key)."""
    base = 10**12 + uuid.uuid4().int % 10**11
    return [base + i for i in range(n)]


def test_a_job_row_inserted_twice_is_refused_by_the_natural_key(
    owner: psycopg.Connection[Any], redeemable: dict[str, int]
) -> None:
    (job,) = job_ids(1)
    # The same rows inserted again are refused by the natural key, whoever inserts them (the
    # chunk applier never gets that far: its checkpoint fencing is tested in test_lease.py).
    row = {"job_id": job, "row_number": 2, "redeemed_ms": SAMPLE_MS, "till_id": "T1"}
    insert(owner, "redemptions", **redeemable, **row)
    refused(
        owner,
        errors.UniqueViolation,
        "uq_redemptions_natural_key",
        "redemptions",
        **redeemable,
        **row,
    )
    # The next row of the same job is another redemption.
    insert(
        owner,
        "redemptions",
        **redeemable,
        job_id=job,
        row_number=3,
        redeemed_ms=SAMPLE_MS + 1,
        till_id="T2",
    )
    assert count(owner, "SELECT count(*) FROM redemptions WHERE job_id = %s", job) == 2


@pytest.mark.parametrize(
    "bill",
    [{"bill_id": "B1", "bill_number": "N1"}, {}],
    ids=["with-bill", "empty-bill-fields-compare-equal"],
)
def test_the_same_redemption_cannot_be_recorded_twice_by_any_job(
    owner: psycopg.Connection[Any], redeemable: dict[str, int], bill: dict[str, str]
) -> None:
    first, second = job_ids(2)
    key = {"redeemed_ms": SAMPLE_MS, "till_id": "T1", **bill}
    insert(owner, "redemptions", **redeemable, job_id=first, row_number=2, **key)
    # Another job (or none at all), the same coupon, time, till and bill: a duplicate.
    for job in ({"job_id": second, "row_number": 2}, {}):
        refused(
            owner,
            errors.UniqueViolation,
            "uq_redemptions_natural_key",
            "redemptions",
            **redeemable,
            **job,
            **key,
        )
    # One part of the key different, and it is another redemption.
    for changed in ({"redeemed_ms": SAMPLE_MS + 1}, {"till_id": "T2"}, {"bill_number": "N2"}):
        insert(owner, "redemptions", **redeemable, **{**key, **changed})
    assert (
        count(
            owner, "SELECT count(*) FROM redemptions WHERE coupon_id = %s", redeemable["coupon_id"]
        )
        == 4
    )


def test_a_coupon_counter_cannot_go_negative(
    owner: psycopg.Connection[Any], redeemable: dict[str, int]
) -> None:
    constraint = "ck_coupon_counters_redemption_count_non_negative"
    coupon, org_id = redeemable["coupon_id"], redeemable["org_id"]
    refused(
        owner,
        errors.CheckViolation,
        constraint,
        "coupon_counters",
        coupon_id=coupon,
        org_id=org_id,
        redemption_count=-1,
    )
    insert(owner, "coupon_counters", coupon_id=coupon, org_id=org_id, redemption_count=0)
    # Counting down below zero is refused too, and the counter keeps its value.
    with pytest.raises(errors.CheckViolation) as caught, owner.transaction():
        owner.execute(
            "UPDATE coupon_counters SET redemption_count = redemption_count - 1 "
            "WHERE coupon_id = %s",
            (coupon,),
        )
    assert caught.value.diag.constraint_name == constraint
    assert (
        count(owner, "SELECT redemption_count FROM coupon_counters WHERE coupon_id = %s", coupon)
        == 0
    )
