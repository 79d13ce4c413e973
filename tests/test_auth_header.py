"""What a 401 says about the Authorization header it was sent."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import refusal


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "missing API key"),
        ({"Authorization": "KEY"}, "lacks its scheme"),
        ({"Authorization": "Bearer "}, "no key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "scheme is not Bearer"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/1", "/coupon/api/v1/upload/redeemFile/1"])
def test_a_key_sent_wrongly_is_a_401_that_says_how(
    client: TestClient, org: tuple[int, str], headers: dict[str, str], words: str, path: str
) -> None:
    sent = {k: v.replace("KEY", org[1]) for k, v in headers.items()}
    method = client.post if "redeemFile" in path else client.get
    answer = method(path, headers=sent)
    assert answer.status_code == 401, answer.text
    _, message, _ = refusal(answer)  # each route in its own shape
    assert words in message
    assert "Authorization: Bearer <key>" in message
    assert org[1] not in answer.text  # never echoes the key


def test_a_key_without_its_scheme_still_works_in_the_capillary_header(
    client: TestClient, org: tuple[int, str]
) -> None:
    answer = client.get("/v1/jobs", headers={"x-cap-api-oauth-token": org[1]})
    assert answer.status_code == 200, answer.text
