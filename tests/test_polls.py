"""GET /v1/jobs/{id}, the route clients poll, reads key and job in one round trip
(core.jobs.poll): it must answer exactly as every other route would."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import text

from core import keys
from core.db import admin_transaction
from tests.factories import SAMPLE_MS, create_job, create_series


def _org_with_a_job() -> tuple[int, int]:
    with admin_transaction() as session:
        org, _ = keys.create_org(session, f"poll-{uuid.uuid4().hex[:12]}")
        org_id = org.id
    series = create_series(org_id)
    return org_id, create_job(org_id, series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,1,C1"])


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
    job = create_job(org[0], series, ["date,till,mobile,code", f"{SAMPLE_MS},T1,1,C1"])
    polled = client.get(f"/v1/jobs/{job}", headers=auth).json()
    [listed] = client.get(f"/v1/jobs?couponSeriesId={series}", headers=auth).json()["items"]
    # Only the rate (rows per second since the start) may differ between two reads.
    assert polled["progress"].pop("rowsPerSecond") is None
    assert listed["progress"].pop("rowsPerSecond") is None
    assert polled == listed
