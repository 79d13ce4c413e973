"""GET /v1/jobs reads a page in one query, however many of its jobs have a webhook."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import event, update

from core.db import get_engine
from core.models import UploadJob
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_job, create_series


@contextmanager
def counted() -> Iterator[list[str]]:
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _jobs_with_callbacks(org_id: int, count: int) -> None:
    series = create_series(org_id)
    made = [
        create_job(org_id, series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,9988776655,C1"])
        for _ in range(count)
    ]
    with admin_transaction() as session:
        session.execute(
            update(UploadJob)
            .where(UploadJob.id.in_(made))
            .values(callback_url="https://example.invalid/hook")
        )


def test_the_job_list_is_one_query_whatever_its_length(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    _jobs_with_callbacks(org[0], 2)
    with counted() as few:
        page = client.get("/v1/jobs", headers=auth)
    assert page.status_code == 200 and len(page.json()["items"]) == 2
    _jobs_with_callbacks(org[0], 10)
    with counted() as many:
        page = client.get("/v1/jobs", headers=auth)
    items = page.json()["items"]
    assert len(items) == 12
    assert all(item["callback"]["state"] == "pending" for item in items)
    assert len(many) == len(few), many
    assert sum("FROM upload_jobs" in statement for statement in many) == 1
