"""Every paged route refuses a cursor it did not give out with a 400, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from core import cursors
from core.errors import DomainError
from tests.factories import SAMPLE_MS, create_job, create_series


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


FORGED = [
    _b64({"before": True}),
    _b64({"before": False}),
    _b64({"before": 0}),
    _b64({"before": -5}),
    _b64({"before": 2**63}),
    _b64({"before": 1.5}),
    _b64({"before": "12"}),
    _b64({"before": None}),
    _b64({"before": 12, "extra": 1}),
    _b64({"after": 12}),
    _b64([12]),
    _b64(12),
    "not base64 at all!",
    "eyJiZWZvcmUiOiAx",  # truncated
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    "A" * 5000,
]
PAGED = ["/v1/jobs", "/v1/coupon-series"]


@pytest.mark.parametrize("cursor", FORGED)
def test_the_codec_refuses_what_it_did_not_make(cursor: str) -> None:
    with pytest.raises(DomainError):
        cursors.decode(cursor)


def test_the_codec_reads_what_it_made() -> None:
    assert cursors.decode(cursors.encode(42)) == 42
    assert cursors.decode(cursors.encode(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize("cursor", FORGED)
def test_a_forged_cursor_is_a_400_on_every_paged_route(
    client: TestClient, auth: dict[str, str], path: str, cursor: str
) -> None:
    answer = client.get(path, params={"cursor": cursor}, headers=auth)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["success"] is False


@pytest.mark.parametrize("path", PAGED)
def test_a_cursor_given_out_pages_on(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], path: str
) -> None:
    for index in range(3):
        series = create_series(org[0], name=f"s{index}")
        create_job(org[0], series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,9988776655,C1"])
    first = client.get(path, params={"limit": 1}, headers=auth).json()
    assert first["nextCursor"] is not None
    second = client.get(path, params={"limit": 1, "cursor": first["nextCursor"]}, headers=auth)
    assert second.status_code == 200
    assert second.json()["items"][0] != first["items"][0]


@pytest.mark.parametrize("after_row", ["-1", "abc", str(2**63), "1.5"])
def test_a_forged_after_row_is_refused_not_a_500(
    client: TestClient, auth: dict[str, str], after_row: str
) -> None:
    answer = client.get("/v1/jobs/1/errors", params={"afterRow": after_row}, headers=auth)
    assert 400 <= answer.status_code < 500, answer.text
