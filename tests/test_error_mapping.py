"""Which database refusals are the client's 400 and which are our 500."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

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


@pytest.fixture
def unreachable_database(database_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The service's database URL pointed at what takes no connection: a role the server
    allows none (53300, as when every slot is taken), or a port where nothing listens."""
    import uuid

    import psycopg

    from core import db
    from core.settings import get_settings
    from tests.processes import free_port

    settings = get_settings()
    kept = settings.database_url
    role = f"br_no_slots_{uuid.uuid4().hex[:8]}"
    owner = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    host = urlsplit(owner)
    if request.param == "no slots":
        url = urlunsplit(host._replace(netloc=f"{role}@{host.hostname}:{host.port or 5432}"))
    else:
        url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    settings.database_url = url
    db.dispose_engine()
    try:
        yield request.param
    finally:
        settings.database_url = kept
        db.dispose_engine()
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.parametrize("unreachable_database", ["no slots", "refused"], indirect=True)
def test_a_database_that_takes_no_connection_is_a_503_with_retry_after(
    app: TestClient, unreachable_database: str
) -> None:
    answer = app.get("/division")  # never reaches the statement
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert "retry" in answer.json()["status"]["message"]
