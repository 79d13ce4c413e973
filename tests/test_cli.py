"""The `bulkredeem` command: orgs, keys and demo data, and clear messages for usual mistakes."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from cli.main import app
from core import demo, keys
from core.models import Coupon, CouponCounter, CouponSeries, Customer, Org, Redemption
from core.settings import get_settings
from tests.dbtools import admin_transaction

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def printed(result: Result, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}: (\S+)$", result.output, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{result.output}"
    return match.group(1)


def authenticates_as(key: str) -> int | None:
    with admin_transaction() as session:
        return keys.authenticate(session, key)


def test_orgs_create_prints_a_key_that_authenticates(database_url: str) -> None:
    result = invoke("orgs", "create", f"cli-{uuid.uuid4().hex[:8]}")

    assert result.exit_code == 0, result.output
    assert authenticates_as(printed(result, "API key")) == int(printed(result, "org id"))


def test_orgs_create_twice_is_refused(database_url: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert invoke("orgs", "create", name).exit_code == 0

    result = invoke("orgs", "create", name)

    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Traceback" not in result.output


def test_revoked_key_no_longer_authenticates(database_url: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    invoke("orgs", "create", name)
    created = invoke("keys", "create", name, "--label", "till sync")
    key, key_id = printed(created, "API key"), printed(created, "key id")
    assert authenticates_as(key) is not None

    revoked = invoke("keys", "revoke", key_id)

    assert revoked.exit_code == 0, revoked.output
    assert authenticates_as(key) is None
    assert invoke("keys", "revoke", key_id).exit_code == 1  # already revoked


def test_keys_list_shows_prefixes_and_revocations_never_keys(database_url: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    first = printed(invoke("orgs", "create", name), "API key")
    second = invoke("keys", "create", name)
    invoke("keys", "revoke", printed(second, "key id"))

    listing = invoke("keys", "list", name)

    assert listing.exit_code == 0, listing.output
    assert first not in listing.output
    assert printed(second, "API key") not in listing.output
    assert first[:10] + "..." in listing.output
    rows = listing.output.strip().splitlines()[1:]
    assert len(rows) == 2
    assert rows[0].rstrip().endswith("-")  # the first key is not revoked
    assert not rows[1].rstrip().endswith("-")  # the second one is


def test_unknown_org_is_a_clear_message(database_url: str) -> None:
    for args in (("keys", "create", "no-such-org"), ("keys", "list", "no-such-org")):
        result = invoke(*args)

        assert result.exit_code == 1
        assert "no org named 'no-such-org'" in result.output
        assert "Traceback" not in result.output


def test_unreachable_database_is_a_clear_message(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/bulkredeem")
    monkeypatch.delenv("DATABASE_ADMIN_URL", raising=False)
    get_settings.cache_clear()
    try:
        for args in (("migrate",), ("orgs", "create", "x"), ("demo", "seed")):
            result = invoke(*args)

            assert result.exit_code == 1
            assert "cannot reach the database at postgresql://postgres@127.0.0.1:1" in (
                result.output
            )
            assert "Traceback" not in result.output
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_demo_seed_is_idempotent_and_holds_what_both_samples_redeem(database_url: str) -> None:
    first = invoke("demo", "seed")
    second = invoke("demo", "seed")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    org_id = int(printed(first, "org id"))
    assert printed(second, "org id") == str(org_id)
    assert printed(second, "series id") == printed(first, "series id")
    # A fresh key each time, and both work.
    assert printed(first, "API key") != printed(second, "API key")
    assert authenticates_as(printed(first, "API key")) == org_id
    assert authenticates_as(printed(second, "API key")) == org_id

    with admin_transaction() as session:
        assert session.execute(select(Org.id).where(Org.name == "demo")).scalars().all() == [org_id]
        series = session.execute(
            select(CouponSeries).where(CouponSeries.org_id == org_id)
        ).scalar_one()
        assert series.id == int(printed(first, "series id"))
        assert series.valid_from is not None and series.valid_from.year == 2020
        assert series.max_redemptions_per_coupon == 1
        assert series.any_user is False

        customer = session.get(Customer, 23599838)  # sample 1's userId
        assert customer is not None
        assert (customer.org_id, customer.mobile) == (org_id, "9988776655")  # sample 2's mobile

        by_id = session.get(Coupon, 23456)  # sample 1's couponId
        by_code = session.execute(
            select(Coupon).where(Coupon.series_id == series.id, Coupon.code == "ABCDEF1")
        ).scalar_one()  # sample 2's coupon code
        for coupon in (by_id, by_code):
            assert coupon is not None
            assert coupon.series_id == series.id
            assert coupon.issued_to_customer_id == 23599838
            assert coupon.revoked_at is None
        assert by_id is not None and by_id.code == "DEMO23456"
        assert session.execute(
            select(Customer.id).where(Customer.org_id == org_id)
        ).scalars().all() == [23599838]


def test_ids_generated_after_the_demo_seed_do_not_collide(database_url: str) -> None:
    assert invoke("demo", "seed").exit_code == 0

    with admin_transaction() as session:
        org_id = session.execute(select(Org.id).where(Org.name == "demo")).scalar_one()
        series_id = session.execute(
            select(CouponSeries.id).where(CouponSeries.org_id == org_id)
        ).scalar_one()
        customer = Customer(org_id=org_id, external_id=uuid.uuid4().hex)
        coupon = Coupon(org_id=org_id, series_id=series_id, code=uuid.uuid4().hex)
        session.add_all([customer, coupon])
        session.flush()
        assert customer.id > demo.CUSTOMER_ID
        assert coupon.id > demo.COUPON_ID


def test_demo_seed_gives_the_samples_their_coupons_back(database_url: str) -> None:
    """A second `make run` must redeem the samples again, not report them as duplicates."""
    with admin_transaction() as session:
        seeded = demo.seed_demo(session)
        session.add(
            Redemption(
                org_id=seeded.org_id,
                series_id=seeded.series_id,
                coupon_id=seeded.coupon_id,
                customer_id=seeded.customer_id,
                redeemed_ms=1603128622000,
                till_id="50015497",
            )
        )
        session.add(
            CouponCounter(coupon_id=seeded.coupon_id, org_id=seeded.org_id, redemption_count=1)
        )

    with admin_transaction() as session:
        demo.seed_demo(session)

    with admin_transaction() as session:
        coupon = session.get_one(Coupon, demo.COUPON_ID)
        assert coupon.redemption_count == 0
        assert (
            session.execute(
                select(Redemption.id).where(Redemption.coupon_id == demo.COUPON_ID)
            ).first()
            is None
        )
