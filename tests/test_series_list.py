"""GET /v1/coupon-series: the caller's org's series, newest first, a page at a time."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from fastapi.testclient import TestClient

from core import keys
from tests.dbtools import admin_transaction
from tests.factories import create_series


def _page(
    client: TestClient, auth: dict[str, str], **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = client.get("/v1/coupon-series", params=params, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["items"], body["nextCursor"]


def test_series_are_listed_newest_first_in_the_shape_of_get_series(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    ids = [create_series(org[0], name=f"s{i}") for i in range(3)]

    items, next_cursor = _page(client, auth)

    assert [item["id"] for item in items] == ids[::-1]
    assert next_cursor is None
    one = client.get(f"/v1/coupon-series/{ids[0]}", headers=auth).json()
    assert items[-1] == one


def test_pages_follow_next_cursor_to_the_last_series_and_then_stop(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    ids = [create_series(org[0], name=f"s{i}") for i in range(5)]

    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        items, cursor = _page(client, auth, **params)
        pages += 1
        assert len(items) <= 2
        seen.extend(item["id"] for item in items)
        if cursor is None:
            break

    assert seen == ids[::-1]
    assert pages == 3


def test_another_orgs_series_are_never_listed(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    with admin_transaction() as session:
        other, _ = keys.create_org(session, f"other-{uuid.uuid4().hex[:8]}")
        other_id = other.id
    foreign = create_series(other_id, name="foreign")
    own = create_series(org[0], name="own")

    items, _ = _page(client, auth, limit=500)

    assert [item["id"] for item in items] == [own]
    assert foreign not in {item["id"] for item in items}


def test_an_org_without_series_gets_an_empty_page(client: TestClient, auth: dict[str, str]) -> None:
    assert _page(client, auth) == ([], None)


def test_without_a_key_the_list_is_401(client: TestClient) -> None:
    response = client.get("/v1/coupon-series")

    assert response.status_code == 401
    assert response.json()["success"] is False


# Decodable, but naming no series id: a bool, a float, past BIGINT, not an object, no key.
FORGED_CURSORS = (
    '{"before": true}',
    '{"before": 1e3}',
    '{"before": 99999999999999999999}',
    "[1]",
    '{"after": 5}',
    '"x"',
)


def test_a_cursor_this_api_did_not_give_out_is_400(
    client: TestClient, auth: dict[str, str]
) -> None:
    forged = [base64.urlsafe_b64encode(text.encode()).decode() for text in FORGED_CURSORS]
    for cursor in ["nonsense", "%%%", *forged]:
        response = client.get("/v1/coupon-series", params={"cursor": cursor}, headers=auth)
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["errors"][0]["field"] == "cursor"
