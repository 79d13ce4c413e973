"""GET and PATCH /v1/org: the org's country calling code, time zone and default guard."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.dbtools import admin_transaction

EMPTY = {"defaultCountryCode": None, "timeZone": None, "defaultMaxErrorRate": None}


def stored(org_id: int) -> tuple[Any, ...]:
    with admin_transaction() as session:
        return tuple(
            session.execute(
                text(
                    "SELECT default_country_code, time_zone, default_max_error_rate"
                    " FROM orgs WHERE id = :o"
                ),
                {"o": org_id},
            ).one()
        )


def test_a_new_org_has_no_settings(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/v1/org", headers=auth)

    assert response.status_code == 200
    assert response.json() == EMPTY


def test_patch_sets_what_it_sends_and_leaves_the_rest(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    first = client.patch("/v1/org", headers=auth, json={"defaultCountryCode": "+91"})
    assert first.status_code == 200, first.text
    assert first.json() == {**EMPTY, "defaultCountryCode": "91"}

    second = client.patch(
        "/v1/org", headers=auth, json={"timeZone": "Asia/Kolkata", "defaultMaxErrorRate": 0.05}
    )

    expected = {"defaultCountryCode": "91", "timeZone": "Asia/Kolkata", "defaultMaxErrorRate": 0.05}
    assert second.json() == expected
    assert client.get("/v1/org", headers=auth).json() == expected
    assert stored(org[0]) == ("91", "Asia/Kolkata", 0.05)


def test_a_null_clears_a_setting_and_an_absent_key_keeps_it(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    client.patch(
        "/v1/org",
        headers=auth,
        json={"defaultCountryCode": "44", "timeZone": "Europe/London", "defaultMaxErrorRate": 1},
    )

    response = client.patch("/v1/org", headers=auth, json={"timeZone": None})

    assert response.json() == {
        "defaultCountryCode": "44",
        "timeZone": None,
        "defaultMaxErrorRate": 1.0,
    }
    assert client.patch("/v1/org", headers=auth, json={}).json() == response.json()
    assert stored(org[0]) == ("44", None, 1.0)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"defaultCountryCode": "999"}, "defaultCountryCode", "'999' is no country's calling code"),
        ({"defaultCountryCode": "800"}, "defaultCountryCode", "non-geographic"),
        ({"defaultCountryCode": "91a"}, "defaultCountryCode", "1 to 3 digits"),
        ({"defaultCountryCode": "9100"}, "defaultCountryCode", "1 to 3 digits"),
        ({"defaultCountryCode": ""}, "defaultCountryCode", "1 to 3 digits"),
        ({"defaultCountryCode": 91}, "defaultCountryCode", "string"),
        ({"timeZone": "Asia/Kolkatta"}, "timeZone", "'Asia/Kolkatta' is not an IANA time zone"),
        ({"timeZone": "asia/kolkata"}, "timeZone", "did you mean 'Asia/Kolkata'?"),
        ({"timeZone": "+05:30"}, "timeZone", "is not an IANA time zone name"),
        ({"defaultMaxErrorRate": 1.5}, "defaultMaxErrorRate", "from 0 to 1"),
        ({"defaultMaxErrorRate": -0.01}, "defaultMaxErrorRate", "from 0 to 1"),
        ({"defaultMaxErrorRate": "5%"}, "defaultMaxErrorRate", "number"),
        ({"defaultMaxErrorRate": True}, "defaultMaxErrorRate", "number"),
        ({"currency": "INR"}, "currency", "Extra inputs are not permitted"),
    ],
)
def test_a_value_that_is_not_a_setting_is_refused_naming_it(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    body: dict[str, Any],
    field: str,
    says: str,
) -> None:
    client.patch("/v1/org", headers=auth, json={"defaultCountryCode": "91"})

    response = client.patch("/v1/org", headers=auth, json={"timeZone": "UTC", **body})

    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors[0]["field"] == field
    assert says in errors[0]["message"]
    # Nothing of a refused request is kept, not even its valid keys.
    assert stored(org[0]) == ("91", None, None)


def test_one_org_can_neither_see_nor_change_another_s_settings(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    from core import keys

    with admin_transaction() as session:
        other, issued = keys.create_org(session, f"other-{org[0]}")
    other_auth = {"Authorization": f"Bearer {issued.key}"}
    client.patch("/v1/org", headers=other_auth, json={"timeZone": "America/New_York"})

    assert client.get("/v1/org", headers=auth).json() == EMPTY
    client.patch("/v1/org", headers=auth, json={"timeZone": "Asia/Kolkata"})

    assert client.get("/v1/org", headers=other_auth).json()["timeZone"] == "America/New_York"
    assert stored(other.id) == (None, "America/New_York", None)
    assert stored(org[0]) == (None, "Asia/Kolkata", None)


def test_the_app_role_may_change_only_the_settings_of_the_org_row(
    database_url: str, org: tuple[int, str]
) -> None:
    """Migration 0011's grant: the settings' columns, not the org's name or anything else."""
    from core.db import transaction

    with pytest.raises(Exception, match="permission denied"), transaction(org[0]) as session:
        session.execute(text("UPDATE orgs SET name = 'renamed' WHERE id = :o"), {"o": org[0]})


def test_no_key_no_settings(client: TestClient) -> None:
    assert client.get("/v1/org").status_code == 401
    assert client.patch("/v1/org", json={"timeZone": "UTC"}).status_code == 401
