"""The reference-data API (DESIGN.md, Reference data), through HTTP, on a real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from core import keys
from core.db import transaction
from core.models import Coupon, Customer, Redemption
from tests.dbtools import admin_transaction

Json = dict[str, Any]


# Factories: each names what its test depends on.


def upsert_customers(client: TestClient, auth: dict[str, str], *items: Json) -> list[Json]:
    response = client.post("/v1/customers", json={"customers": list(items)}, headers=auth)
    assert response.status_code == 200, response.text
    customers: list[Json] = response.json()["customers"]
    return customers


def create_series(client: TestClient, auth: dict[str, str], **fields: Any) -> Json:
    response = client.post("/v1/coupon-series", json={"name": "s", **fields}, headers=auth)
    assert response.status_code == 201, response.text
    series: Json = response.json()
    return series


def create_coupons(
    client: TestClient, auth: dict[str, str], series_id: int, *items: Json
) -> list[Json]:
    response = client.post(
        f"/v1/coupon-series/{series_id}/coupons", json={"coupons": list(items)}, headers=auth
    )
    assert response.status_code == 201, response.text
    coupons: list[Json] = response.json()["coupons"]
    return coupons


def get_coupon(client: TestClient, auth: dict[str, str], coupon_id: int) -> Json:
    response = client.get(f"/v1/coupons/{coupon_id}", headers=auth)
    assert response.status_code == 200, response.text
    coupon: Json = response.json()
    return coupon


def record_redemption(
    org_id: int, coupon_id: int, customer_id: int, redeemed_ms: int, till_id: str = "T1"
) -> None:
    """What the upload worker does for one applied row: a redemption and the coupon's counter."""
    with transaction(org_id) as session:
        coupon = session.get_one(Coupon, coupon_id)
        session.add(
            Redemption(
                org_id=org_id,
                series_id=coupon.series_id,
                coupon_id=coupon_id,
                customer_id=customer_id,
                redeemed_ms=redeemed_ms,
                till_id=till_id,
            )
        )
        session.execute(
            text(
                "INSERT INTO coupon_counters AS c (coupon_id, org_id, redemption_count) "
                "VALUES (:coupon, :org, 1) ON CONFLICT (coupon_id) "
                "DO UPDATE SET redemption_count = c.redemption_count + 1"
            ),
            {"coupon": coupon_id, "org": org_id},
        )


def customer_count(org_id: int) -> int:
    with transaction(org_id) as session:
        return (
            session.scalar(
                select(func.count()).select_from(Customer).where(Customer.org_id == org_id)
            )
            or 0
        )


def other_org() -> dict[str, str]:
    with admin_transaction() as session:
        _, issued = keys.create_org(session, f"other-{uuid.uuid4().hex[:12]}")
    return {"Authorization": f"Bearer {issued.key}"}


def assert_error(response: Any, status: int, field: str) -> Json:
    assert response.status_code == status, response.text
    body: Json = response.json()
    assert body["success"] is False
    assert body["status"]["code"] == status
    assert field in [e["field"] for e in body["errors"]], body
    assert field in body["status"]["message"]
    return body


# Customers


def test_customer_is_created_then_matched_by_any_of_its_identifiers(
    client: TestClient, auth: dict[str, str]
) -> None:
    [created] = upsert_customers(
        client, auth, {"externalId": "X1", "mobile": "9988776655", "email": "a@b.co", "name": "A"}
    )
    assert created["userId"] > 0
    assert created == {
        "userId": created["userId"],
        "externalId": "X1",
        "mobile": "9988776655",
        "email": "a@b.co",
        "name": "A",
    }

    by_mobile, by_email, by_external = upsert_customers(
        client, auth, {"mobile": "9988776655"}, {"email": "a@b.co"}, {"externalId": "X1"}
    )
    assert by_mobile == by_email == by_external == created


def test_matched_customer_gets_the_items_other_identifiers(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    [created] = upsert_customers(client, auth, {"mobile": "9988776655"})
    [merged] = upsert_customers(
        client, auth, {"mobile": "9988776655", "externalId": "X9", "email": "m@x.io"}
    )
    assert merged["userId"] == created["userId"]
    assert (merged["externalId"], merged["email"], merged["name"]) == ("X9", "m@x.io", None)

    # A later item may change an identifier the customer already has; the name stays unless given.
    [changed] = upsert_customers(client, auth, {"externalId": "X9", "mobile": "9000000001"})
    assert changed["userId"] == created["userId"]
    assert changed["mobile"] == "9000000001"
    assert customer_count(org[0]) == 1


def test_identifiers_of_two_different_customers_are_a_conflict(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    first, second = upsert_customers(client, auth, {"externalId": "E1"}, {"mobile": "9988776655"})
    response = client.post(
        "/v1/customers",
        json={"customers": [{"email": "new@x.io"}, {"externalId": "E1", "mobile": "9988776655"}]},
        headers=auth,
    )
    body = assert_error(response, 409, "customers[1]")
    assert f"userId {first['userId']}" in body["status"]["message"]
    assert f"userId {second['userId']}" in body["status"]["message"]
    # The whole batch failed: its first item created nobody.
    assert customer_count(org[0]) == 2


def test_items_of_one_batch_apply_in_input_order(client: TestClient, auth: dict[str, str]) -> None:
    results = upsert_customers(
        client,
        auth,
        {"mobile": "9988776655"},
        {"mobile": "9988776655", "email": "Same@Person.io"},
        {"email": "same@person.io", "externalId": "P1", "name": "Pat"},
        # Moves P1 to a new mobile, which frees 9988776655 for the item after it.
        {"externalId": "P1", "mobile": "9111111111"},
        {"mobile": "9988776655"},
    )
    person = results[0]["userId"]
    assert [r["userId"] for r in results[:4]] == [person] * 4
    # Each item answers its customer as the whole batch left it.
    assert results[0] == {
        "userId": person,
        "externalId": "P1",
        "mobile": "9111111111",
        "email": "same@person.io",
        "name": "Pat",
    }
    assert results[4]["userId"] != person


def test_an_identifier_taken_by_an_earlier_item_of_the_batch_conflicts(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = client.post(
        "/v1/customers",
        json={
            "customers": [
                {"externalId": "A"},
                {"mobile": "9988776655"},
                {"externalId": "A", "mobile": "+9988776655"},
            ]
        },
        headers=auth,
    )
    body = assert_error(response, 409, "customers[2]")
    assert "customers[0]" in body["status"]["message"]


def test_identifiers_move_between_stored_customers_in_one_batch(
    client: TestClient, auth: dict[str, str]
) -> None:
    # B is stored first, so its row comes first in the batch's UPDATE.
    b, a = upsert_customers(
        client, auth, {"externalId": "B"}, {"externalId": "A", "mobile": "9000000001"}
    )
    # A gives up its mobile, then B takes it: Postgres checks uniqueness row by row, so a single
    # UPDATE that reached B first would trip the constraint on a batch that is perfectly valid.
    moved_a, moved_b = upsert_customers(
        client,
        auth,
        {"externalId": "A", "mobile": "9000000002"},
        {"externalId": "B", "mobile": "9000000001"},
    )
    assert (moved_a["userId"], moved_a["mobile"]) == (a["userId"], "9000000002")
    assert (moved_b["userId"], moved_b["mobile"]) == (b["userId"], "9000000001")


def test_a_bad_item_fails_the_whole_batch_with_422_naming_its_index(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    items: list[Json] = [{"mobile": f"900000000{i}"} for i in range(3)]
    items.append({"mobile": "12-34"})
    response = client.post("/v1/customers", json={"customers": items}, headers=auth)
    assert_error(response, 422, "customers[3].mobile")
    assert customer_count(org[0]) == 0


def test_every_bad_item_is_named(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/v1/customers",
        json={"customers": [{"email": "not-an-email"}, {"name": "no identifier"}, {"mobile": ""}]},
        headers=auth,
    )
    body = assert_error(response, 422, "customers[0].email")
    assert {e["field"] for e in body["errors"]} == {
        "customers[0].email",
        "customers[1]",
        "customers[2]",
    }
    assert "(and 2 more)" in body["status"]["message"]


def test_schema_errors_name_the_index(client: TestClient, auth: dict[str, str]) -> None:
    wrong_type = client.post(
        "/v1/customers",
        json={"customers": [{"mobile": "9988776655"}, {"mobile": 9988776655}]},
        headers=auth,
    )
    assert_error(wrong_type, 422, "customers[1].mobile")
    misspelt = client.post(
        "/v1/customers",
        json={"customers": [{"mobile": "9988776655"}, {"mobil": "1"}]},
        headers=auth,
    )
    assert_error(misspelt, 422, "customers[1].mobil")


def test_a_batch_over_10000_items_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    items = [{"externalId": str(i)} for i in range(10_001)]
    response = client.post("/v1/customers", json={"customers": items}, headers=auth)
    assert_error(response, 422, "customers")


def test_a_batch_of_10000_customers_is_created_then_matched(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    items = [{"externalId": f"E{i}", "mobile": f"9{i:09d}"} for i in range(10_000)]
    created = upsert_customers(client, auth, *items)
    assert len({c["userId"] for c in created}) == 10_000
    assert [c["externalId"] for c in created] == [f"E{i}" for i in range(10_000)]

    emails = [{"mobile": f"9{i:09d}", "email": f"c{i}@x.io"} for i in range(10_000)]
    updated = upsert_customers(client, auth, *emails)
    assert [u["userId"] for u in updated] == [c["userId"] for c in created]
    assert updated[9_999]["email"] == "c9999@x.io"
    assert customer_count(org[0]) == 10_000


@pytest.mark.parametrize(
    "written", ["+91 (998) 877-6655", "91 998 877 6655", "91.998.877.6655", "[91]9988776655"]
)
def test_mobiles_are_normalised_to_their_digits(
    client: TestClient, auth: dict[str, str], written: str
) -> None:
    [stored] = upsert_customers(client, auth, {"mobile": written})
    assert stored["mobile"] == "919988776655"
    [matched] = upsert_customers(client, auth, {"mobile": "919988776655"})
    assert matched["userId"] == stored["userId"]


@pytest.mark.parametrize("written", ["9.98877E+09", "9.98877e9", "12345", "9988776655x", "+"])
def test_a_mobile_that_is_not_digits_is_refused_not_guessed(
    client: TestClient, auth: dict[str, str], written: str
) -> None:
    response = client.post("/v1/customers", json={"customers": [{"mobile": written}]}, headers=auth)
    assert_error(response, 422, "customers[0].mobile")


def test_emails_match_case_insensitively(client: TestClient, auth: dict[str, str]) -> None:
    [stored] = upsert_customers(client, auth, {"email": "  Ann.Lee@Example.COM "})
    assert stored["email"] == "ann.lee@example.com"
    [matched] = upsert_customers(client, auth, {"email": "ann.lee@example.com", "name": "Ann"})
    assert matched["userId"] == stored["userId"]


def test_orgs_do_not_share_customers(client: TestClient, auth: dict[str, str]) -> None:
    [mine] = upsert_customers(client, auth, {"mobile": "9988776655"})
    [theirs] = upsert_customers(client, other_org(), {"mobile": "9988776655"})
    assert theirs["userId"] != mine["userId"]


# Coupon series


def test_series_gets_the_documented_defaults(client: TestClient, auth: dict[str, str]) -> None:
    series = create_series(client, auth, name="Diwali")
    assert series == {
        "id": series["id"],
        "name": "Diwali",
        "maxRedemptionsPerCoupon": 1,
        "sameUserMultipleRedeem": False,
        "maxRedemptionsPerCustomer": None,
        "validFrom": None,
        "validTill": None,
        "anyUser": False,
        "allowedTillIds": None,
        "createdAt": series["createdAt"],
    }
    assert datetime.fromisoformat(series["createdAt"]).tzinfo is not None
    fetched = client.get(f"/v1/coupon-series/{series['id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json() == series


def test_explicit_null_limit_means_unlimited(client: TestClient, auth: dict[str, str]) -> None:
    series = create_series(
        client,
        auth,
        maxRedemptionsPerCoupon=None,
        sameUserMultipleRedeem=True,
        maxRedemptionsPerCustomer=3,
        anyUser=True,
        allowedTillIds=[" T1 ", "T2", "T1"],
    )
    assert series["maxRedemptionsPerCoupon"] is None
    assert series["sameUserMultipleRedeem"] is True
    assert series["maxRedemptionsPerCustomer"] == 3
    assert series["anyUser"] is True
    assert series["allowedTillIds"] == ["T1", "T2"]


def test_series_times_are_utc_when_no_offset_is_given(
    client: TestClient, auth: dict[str, str]
) -> None:
    series = create_series(
        client, auth, validFrom="2024-01-01T00:00:00", validTill="2024-06-30T23:59:59+05:30"
    )
    assert series["validFrom"] == "2024-01-01T00:00:00Z"
    assert series["validTill"] == "2024-06-30T18:29:59Z"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"maxRedemptionsPerCoupon": 0}, "maxRedemptionsPerCoupon"),
        ({"maxRedemptionsPerCustomer": -1}, "maxRedemptionsPerCustomer"),
        ({"maxRedemptionsPerCoupon": 2**31}, "maxRedemptionsPerCoupon"),
        ({"validFrom": "2024-02-01T00:00:00Z", "validTill": "2024-01-01T00:00:00Z"}, "validTill"),
        ({"validFrom": "2024-01-01"}, "validFrom"),
        ({"validTill": "next tuesday"}, "validTill"),
        ({"allowedTillIds": []}, "allowedTillIds"),
        ({"allowedTillIds": ["T1", " "]}, "allowedTillIds[1]"),
        ({"name": "  "}, "name"),
        ({"maxRedemptionsPerCoupon": True}, "maxRedemptionsPerCoupon"),
        ({"anyUser": "yes"}, "anyUser"),
        ({"validFrom": 1700000000000}, "validFrom"),
    ],
)
def test_bad_series_fields_are_422_naming_the_field(
    client: TestClient, auth: dict[str, str], fields: Json, field: str
) -> None:
    response = client.post("/v1/coupon-series", json={"name": "s", **fields}, headers=auth)
    assert_error(response, 422, field)


# Coupons


def test_coupons_are_created_issued_to_customers_named_any_way(
    client: TestClient, auth: dict[str, str]
) -> None:
    [customer] = upsert_customers(
        client, auth, {"externalId": "X1", "mobile": "9988776655", "email": "a@b.co"}
    )
    series = create_series(client, auth)
    created = create_coupons(
        client,
        auth,
        series["id"],
        {"code": "BY-ID", "issuedTo": {"userId": customer["userId"]}},
        {"code": "BY-MOBILE", "issuedTo": {"mobile": "+99 88-77-66-55"}},
        {"code": "BY-EMAIL", "issuedTo": {"email": "A@B.CO"}},
        {"code": "BY-EXTERNAL", "issuedTo": {"externalId": "X1"}},
        {"code": " ANYONE ", "expiresAt": "2030-12-31T23:59:59"},
    )
    assert [c["code"] for c in created] == [
        "BY-ID",
        "BY-MOBILE",
        "BY-EMAIL",
        "BY-EXTERNAL",
        "ANYONE",
    ]
    for coupon in created[:4]:
        fetched = get_coupon(client, auth, coupon["couponId"])
        assert fetched["issuedTo"] == {"userId": customer["userId"]}
        assert fetched["seriesId"] == series["id"]
        assert fetched["expiresAt"] is None
    anyone = get_coupon(client, auth, created[4]["couponId"])
    assert anyone["issuedTo"] is None
    assert anyone["expiresAt"] == "2030-12-31T23:59:59Z"
    assert (anyone["status"], anyone["redemptionCount"], anyone["redemptions"]) == ("ACTIVE", 0, [])


def test_an_unknown_customer_in_issued_to_is_422_naming_the_index(
    client: TestClient, auth: dict[str, str]
) -> None:
    [theirs] = upsert_customers(client, other_org(), {"mobile": "9988776655"})
    series = create_series(client, auth)
    response = client.post(
        f"/v1/coupon-series/{series['id']}/coupons",
        json={
            "coupons": [
                {"code": "A"},
                {"code": "B", "issuedTo": {"mobile": "9988776655"}},
                {"code": "C", "issuedTo": {"userId": theirs["userId"]}},
                {"code": "D", "issuedTo": {"mobile": "9.98877E+09"}},
                {"code": "E", "issuedTo": {"mobile": "9988776655", "email": "a@b.co"}},
                {"code": "F", "expiresAt": "soon"},
            ]
        },
        headers=auth,
    )
    body = assert_error(response, 422, "coupons[3].issuedTo.mobile")
    assert {e["field"] for e in body["errors"]} == {
        "coupons[3].issuedTo.mobile",
        "coupons[4].issuedTo",
        "coupons[5].expiresAt",
    }
    # Only a well-formed batch is looked up: then the unknown customers are named.
    response = client.post(
        f"/v1/coupon-series/{series['id']}/coupons",
        json={
            "coupons": [
                {"code": "A"},
                {"code": "B", "issuedTo": {"mobile": "9988776655"}},
                {"code": "C", "issuedTo": {"userId": theirs["userId"]}},
            ]
        },
        headers=auth,
    )
    body = assert_error(response, 422, "coupons[1].issuedTo.mobile")
    assert {e["field"] for e in body["errors"]} == {
        "coupons[1].issuedTo.mobile",
        "coupons[2].issuedTo.userId",
    }


def test_a_batch_of_10000_coupons_is_created_in_one_request(
    client: TestClient, auth: dict[str, str]
) -> None:
    customers = upsert_customers(client, auth, *[{"mobile": f"8{i:09d}"} for i in range(10_000)])
    series = create_series(client, auth)
    items = [{"code": f"C{i}", "issuedTo": {"mobile": f"8{i:09d}"}} for i in range(10_000)]
    created = create_coupons(client, auth, series["id"], *items)
    assert [c["code"] for c in created] == [f"C{i}" for i in range(10_000)]
    last = get_coupon(client, auth, created[-1]["couponId"])
    assert last["issuedTo"] == {"userId": customers[-1]["userId"]}


def test_a_code_repeated_within_the_batch_is_422_naming_the_index(
    client: TestClient, auth: dict[str, str]
) -> None:
    series = create_series(client, auth)
    response = client.post(
        f"/v1/coupon-series/{series['id']}/coupons",
        json={"coupons": [{"code": "A"}, {"code": "B"}, {"code": " A"}]},
        headers=auth,
    )
    body = assert_error(response, 422, "coupons[2].code")
    assert "coupons[0].code" in body["status"]["message"]
    created = create_coupons(client, auth, series["id"], {"code": "A"})
    assert created[0]["code"] == "A"


def test_a_code_the_series_already_has_is_a_conflict(
    client: TestClient, auth: dict[str, str]
) -> None:
    series = create_series(client, auth)
    create_coupons(client, auth, series["id"], {"code": "A"})
    response = client.post(
        f"/v1/coupon-series/{series['id']}/coupons",
        json={"coupons": [{"code": "B"}, {"code": "A"}]},
        headers=auth,
    )
    assert_error(response, 409, "coupons[1].code")
    # Nothing of the failed batch was kept, and another series may use the same code.
    create_coupons(client, auth, series["id"], {"code": "B"})
    other = create_series(client, auth)
    create_coupons(client, auth, other["id"], {"code": "A"})


def test_revoked_coupon_stays_revoked_from_its_first_revocation(
    client: TestClient, auth: dict[str, str]
) -> None:
    series = create_series(client, auth)
    [coupon] = create_coupons(client, auth, series["id"], {"code": "R"})
    first = client.post(f"/v1/coupons/{coupon['couponId']}/revoke", headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "REVOKED"
    assert first.json()["revokedAt"] is not None
    again = client.post(f"/v1/coupons/{coupon['couponId']}/revoke", headers=auth)
    assert again.json()["revokedAt"] == first.json()["revokedAt"]
    assert get_coupon(client, auth, coupon["couponId"])["status"] == "REVOKED"


def test_coupon_shows_its_redemptions_newest_first_and_its_status(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    [customer] = upsert_customers(client, auth, {"mobile": "9988776655"})
    series = create_series(client, auth, maxRedemptionsPerCoupon=2)
    [coupon] = create_coupons(client, auth, series["id"], {"code": "TWICE"})
    record_redemption(org[0], coupon["couponId"], customer["userId"], 1_700_000_000_000, "T1")
    once = get_coupon(client, auth, coupon["couponId"])
    assert (once["status"], once["redemptionCount"]) == ("ACTIVE", 1)

    record_redemption(org[0], coupon["couponId"], customer["userId"], 1_700_000_500_000, "T2")
    twice = get_coupon(client, auth, coupon["couponId"])
    assert (twice["status"], twice["redemptionCount"]) == ("REDEEMED", 2)
    assert [r["redeemedDateInMillis"] for r in twice["redemptions"]] == [
        1_700_000_500_000,
        1_700_000_000_000,
    ]
    newest = twice["redemptions"][0]
    assert (newest["userId"], newest["tillId"], newest["billId"]) == (customer["userId"], "T2", "")


def test_expired_coupons_and_series_show_expired(client: TestClient, auth: dict[str, str]) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    series = create_series(client, auth)
    [coupon] = create_coupons(client, auth, series["id"], {"code": "OLD", "expiresAt": past})
    assert get_coupon(client, auth, coupon["couponId"])["status"] == "EXPIRED"

    ended = create_series(client, auth, validTill=past)
    [in_ended] = create_coupons(client, auth, ended["id"], {"code": "X"})
    assert get_coupon(client, auth, in_ended["couponId"])["status"] == "EXPIRED"


def test_coupon_is_found_by_series_and_code(client: TestClient, auth: dict[str, str]) -> None:
    series = create_series(client, auth)
    other = create_series(client, auth)
    [coupon] = create_coupons(client, auth, series["id"], {"code": "FIND-ME"})
    create_coupons(client, auth, other["id"], {"code": "FIND-ME"})

    found = client.get(
        "/v1/coupons", params={"seriesId": series["id"], "code": "FIND-ME"}, headers=auth
    )
    assert found.status_code == 200, found.text
    assert found.json() == get_coupon(client, auth, coupon["couponId"])

    missing = client.get(
        "/v1/coupons", params={"seriesId": series["id"], "code": "NOPE"}, headers=auth
    )
    assert missing.status_code == 404
    without_series = client.get("/v1/coupons", params={"code": "FIND-ME"}, headers=auth)
    assert_error(without_series, 422, "seriesId")


# Tenancy and auth


ENDPOINTS = [
    ("POST", "/v1/customers", {"customers": []}),
    ("POST", "/v1/coupon-series", {"name": "s"}),
    ("GET", "/v1/coupon-series/1", None),
    ("POST", "/v1/coupon-series/1/coupons", {"coupons": []}),
    ("POST", "/v1/coupons/1/revoke", None),
    ("GET", "/v1/coupons/1", None),
    ("GET", "/v1/coupons?seriesId=1&code=A", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer br_not-a-key"}, {"x-cap-api-oauth-token": "nope"}]
)
def test_a_request_without_a_valid_key_is_401(
    client: TestClient, method: str, path: str, body: Json | None, headers: dict[str, str]
) -> None:
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["status"]["code"] == 401


def test_the_capillary_token_header_is_accepted(client: TestClient, org: tuple[int, str]) -> None:
    response = client.post(
        "/v1/coupon-series", json={"name": "s"}, headers={"x-cap-api-oauth-token": org[1]}
    )
    assert response.status_code == 201, response.text


def test_another_orgs_series_and_coupon_are_404(client: TestClient, auth: dict[str, str]) -> None:
    [customer] = upsert_customers(client, auth, {"mobile": "9988776655"})
    series = create_series(client, auth)
    [coupon] = create_coupons(
        client, auth, series["id"], {"code": "MINE", "issuedTo": {"userId": customer["userId"]}}
    )
    stranger = other_org()

    assert client.get(f"/v1/coupon-series/{series['id']}", headers=stranger).status_code == 404
    into_series = client.post(
        f"/v1/coupon-series/{series['id']}/coupons",
        json={"coupons": [{"code": "THEIRS"}]},
        headers=stranger,
    )
    assert into_series.status_code == 404
    assert client.get(f"/v1/coupons/{coupon['couponId']}", headers=stranger).status_code == 404
    revoke = client.post(f"/v1/coupons/{coupon['couponId']}/revoke", headers=stranger)
    assert revoke.status_code == 404
    find = client.get(
        "/v1/coupons", params={"seriesId": series["id"], "code": "MINE"}, headers=stranger
    )
    assert find.status_code == 404
    # And the owner still sees it untouched.
    assert get_coupon(client, auth, coupon["couponId"])["status"] == "ACTIVE"


def test_ids_beyond_bigint_are_refused_not_passed_to_the_database(
    client: TestClient, auth: dict[str, str]
) -> None:
    too_big = 2**63
    assert client.get(f"/v1/coupon-series/{too_big}", headers=auth).status_code == 422
    assert client.get(f"/v1/coupons/{too_big}", headers=auth).status_code == 422
    series = create_series(client, auth)
    response = client.post(
        f"/v1/coupon-series/{series['id']}/coupons",
        json={"coupons": [{"code": "A", "issuedTo": {"userId": too_big}}]},
        headers=auth,
    )
    assert_error(response, 422, "coupons[0].issuedTo.userId")
