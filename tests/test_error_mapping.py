"""Which database refusals are the client's 400 and which are our 500."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from api import errors
from core.db import transaction


@pytest.fixture
def app(database_url: str) -> TestClient:
    app = FastAPI()
    errors.install(app)

    @app.get("/{statement}")
    def run(statement: str) -> dict[str, str]:
        queries = {
            "nul": ("SELECT :v", {"v": "a\x00b"}),
            "overflow": ("SELECT CAST(:v AS integer)", {"v": 2**40}),
            "too-long": ("INSERT INTO short_text VALUES (:v)", {"v": "abc"}),
            "division": ("SELECT 1 / 0", {}),
            "bad-cast": ("SELECT CAST('x' AS integer)", {}),
        }
        sql, params = queries[statement]
        with transaction() as session:
            session.execute(text("CREATE TEMP TABLE short_text (v varchar(2)) ON COMMIT DROP"))
            session.execute(text(sql), params)
        return {}

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("statement", ["nul", "overflow", "too-long"])
def test_a_value_the_database_refuses_from_a_request_is_a_400(
    app: TestClient, statement: str
) -> None:
    answer = app.get(f"/{statement}")
    assert answer.status_code == 400, answer.text
    assert "SELECT" not in answer.text


@pytest.mark.parametrize("statement", ["division", "bad-cast"])
def test_a_data_error_of_our_own_making_is_a_500(app: TestClient, statement: str) -> None:
    answer = app.get(f"/{statement}")
    assert answer.status_code == 500, answer.text
    assert answer.json()["status"]["message"] == "internal error"
