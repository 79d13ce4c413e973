"""GET /v1/jobs/{id}, the route clients poll, reads key and job in one query on connections of
its own (core.jobs.poll): it must answer exactly as every other route would."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import text

from core import keys
from core.db import POLL_APPLICATION, get_poll_engine
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_job, create_series


def _job_of(org_id: int, series: int | None = None) -> int:
    """A one-row job of the org, in `series` or a new one."""
    series = create_series(org_id) if series is None else series
    return create_job(org_id, series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,1,C1"])


def _org_with_a_job() -> tuple[int, int]:
    with admin_transaction() as session:
        org, _ = keys.create_org(session, f"poll-{uuid.uuid4().hex[:12]}")
        org_id = org.id
    return org_id, _job_of(org_id)


def _key_with_prefix(org_id: int, prefix: str) -> str:
    """A key of `org_id` that starts with `prefix`, stored as the service stores keys."""
    key = prefix + uuid.uuid4().hex
    with admin_transaction() as session:
        session.execute(
            text(
                "INSERT INTO api_keys (org_id, prefix, key_hash, label)"
                " VALUES (:org, :prefix, :hash, 'same prefix')"
            ),
            {"org": org_id, "prefix": keys.prefix_of(key), "hash": keys.hash_key(key)},
        )
    return key


def test_keys_sharing_a_prefix_each_see_their_own_orgs_job_only(client: TestClient) -> None:
    # The prefix finds both keys: each must be read under its own org, and only its own.
    prefix = keys.KEY_PREFIX + uuid.uuid4().hex[: keys.PREFIX_CHARS]
    (first_org, first_job), (second_org, second_job) = _org_with_a_job(), _org_with_a_job()
    first_key = _key_with_prefix(first_org, prefix)
    second_key = _key_with_prefix(second_org, prefix)
    for key, mine, theirs in (
        (first_key, first_job, second_job),
        (second_key, second_job, first_job),
    ):
        headers = {"Authorization": f"Bearer {key}"}
        shown = client.get(f"/v1/jobs/{mine}", headers=headers)
        assert shown.status_code == 200, shown.text
        assert shown.json()["jobId"] == mine
        assert client.get(f"/v1/jobs/{theirs}", headers=headers).status_code == 404
    # The same prefix with a secret of neither key is no key at all.
    stranger = {"Authorization": f"Bearer {prefix}{uuid.uuid4().hex}"}
    assert client.get(f"/v1/jobs/{first_job}", headers=stranger).status_code == 401


def test_a_polled_job_reads_as_the_job_list_shows_it(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    series = create_series(org[0])
    job = _job_of(org[0], series)
    polled = client.get(f"/v1/jobs/{job}", headers=auth).json()
    [listed] = client.get(f"/v1/jobs?couponSeriesId={series}", headers=auth).json()["items"]
    # Only the rate (rows per second since the start) may differ between two reads.
    assert polled["progress"].pop("rowsPerSecond") is None
    assert listed["progress"].pop("rowsPerSecond") is None
    assert polled == listed


def _poll_backends() -> list[int]:
    with admin_transaction() as session:
        return list(
            session.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": POLL_APPLICATION},
            ).scalars()
        )


def test_a_poll_leaves_no_org_on_its_connections(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    """The org a poll sets is its query's own: the next poll on that connection, whatever
    its key, starts from none."""
    job = _job_of(org[0])
    for _ in range(3):
        assert client.get(f"/v1/jobs/{job}", headers=auth).status_code == 200
    pool = get_poll_engine().pool
    held = [pool.connect() for _ in range(pool.checkedin())]  # every idle one, the poll's too
    try:
        assert held
        for raw in held:
            conn = raw.driver_connection
            assert conn.autocommit
            assert conn.execute("SELECT current_setting('app.org_id', true)").fetchone() in (
                (None,),
                ("",),
            )
    finally:
        for raw in held:
            raw.close()


def test_polls_go_on_after_the_server_drops_every_poll_connection(
    client: TestClient, org: tuple[int, str], auth: dict[str, str]
) -> None:
    """As after a Postgres restart: the pool holds only dead connections. The first poll
    finds one dead, drops the pool and answers from a new connection; nothing fails."""
    job = _job_of(org[0])
    pool = get_poll_engine().pool
    held = [pool.connect() for _ in range(3)]  # at least three in the pool
    for raw in held:
        raw.close()
    assert client.get(f"/v1/jobs/{job}", headers=auth).status_code == 200
    dead = _poll_backends()
    assert len(dead) >= 3
    with admin_transaction() as session:
        session.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(:pids) pid"), {"pids": dead}
        )
    for _ in range(5):
        polled = client.get(f"/v1/jobs/{job}", headers=auth)
        assert polled.status_code == 200, polled.text
        assert polled.json()["jobId"] == job
    assert not set(dead) & set(_poll_backends())
