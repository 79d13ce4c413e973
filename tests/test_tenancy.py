"""Isolation between orgs that holds even where the code forgets: the role, the policies, and
a 404 from every route with an id for another org's object."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from core import keys
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_job, create_series, write_csv
from tests.helpers import MOBILE_HEADERS, job_id_of, upload, wait_for_job


def app_url() -> str:
    return get_settings().database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_the_service_role_is_no_superuser_has_no_bypassrls_and_owns_no_table(
    database_url: str,
) -> None:
    with psycopg.connect(app_url()) as conn:
        role, superuser, bypass = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (None, None, None)
        owned = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = current_user"
        ).fetchone()
    assert role == get_settings().app_db_role
    assert (superuser, bypass) == (False, False)
    assert owned == (0,)


def test_every_tenant_table_forces_row_level_security(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' "
            "AND relname <> 'alembic_version' ORDER BY relname"
        ).fetchall()
    assert rows and all(enabled and forced for _, enabled, forced in rows), rows


def test_without_an_org_the_service_role_sees_nothing(
    org: tuple[int, str], database_url: str
) -> None:
    series = create_series(org[0])
    create_coupon(org[0], series, "VISIBLE-ONLY-IN-ITS-ORG")
    with psycopg.connect(app_url()) as conn:
        for table in ("orgs", "api_keys", "coupon_series", "coupons", "upload_jobs"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO coupon_series (org_id, name) VALUES (%s, 'sneaky')", (org[0],)
            )


def test_an_org_set_for_one_transaction_is_gone_in_the_next(
    org: tuple[int, str], database_url: str
) -> None:
    series = create_series(org[0])
    with psycopg.connect(app_url()) as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('app.org_id', %s, true)", (str(org[0]),))
            assert conn.execute(
                "SELECT count(*) FROM coupon_series WHERE id = %s", (series,)
            ).fetchone() == (1,)
        # The same (pooled) connection, the next transaction: no org, nothing visible.
        with conn.transaction():
            assert conn.execute("SELECT count(*) FROM coupon_series").fetchone() == (0,)


def test_the_workers_chunk_sql_runs_under_the_jobs_org(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
    worker: Any,
) -> None:
    org_id = org[0]
    series = create_series(org_id, any_user=True)
    for i in range(3):
        create_coupon(org_id, series, f"P{i}")
    from tests.factories import create_customer

    create_customer(org_id, mobile="9988776600")
    probe = f"rls_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {probe} (setting text, row_org bigint)")
        conn.execute(f"GRANT INSERT ON {probe} TO {get_settings().app_db_role}")
        conn.execute(
            f"""
            CREATE FUNCTION {probe}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {probe} VALUES (current_setting('app.org_id', true), NEW.org_id);
                RETURN NEW;
            END $$
            """
        )
        conn.execute(
            f"CREATE TRIGGER {probe} AFTER INSERT ON redemptions "
            f"FOR EACH ROW WHEN (NEW.org_id = {org_id}) EXECUTE FUNCTION {probe}()"
        )
    try:
        path = write_csv(
            tmp_path / "probe.csv",
            ["date", "till", "mobile", "code"],
            [(SAMPLE_MS + i, "T", "9988776600", f"P{i}") for i in range(3)],
        )
        job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
        assert wait_for_job(client, auth, job)["progress"]["rowsSucceeded"] == 3
        with psycopg.connect(database_url) as conn:
            seen = conn.execute(f"SELECT setting, row_org FROM {probe}").fetchall()
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP TRIGGER IF EXISTS {probe} ON redemptions")
            conn.execute(f"DROP FUNCTION IF EXISTS {probe}()")
            conn.execute(f"DROP TABLE IF EXISTS {probe}")
    assert seen == [(str(org_id), org_id)] * 3


# --- every route with an id: 404 for another org's object ------------------------------------


@pytest.fixture(scope="module")
def foreign(database_url: str) -> dict[str, int]:
    """Objects of another org: the caller must never learn that they exist."""
    with admin_transaction() as session:
        other, _ = keys.create_org(session, f"foreign-{uuid.uuid4().hex[:8]}")
        org_id = other.id
    series = create_series(org_id)
    coupon = create_coupon(org_id, series, "FOREIGN")
    job = create_job(org_id, series, ["date,till,mobile,code", f"{SAMPLE_MS},T,1,FOREIGN"])
    return {"series": series, "coupon": coupon, "job": job}


UPLOAD_FORM = {
    "customerIdentifier": "MOBILE",
    "couponIdentifier": "COUPON_CODE",
    "uploadHeaders": json.dumps(MOBILE_HEADERS),
}
# (method, OpenAPI path) -> the request, given the foreign objects.
ROUTES_WITH_IDS: dict[tuple[str, str], Any] = {
    ("post", "/coupon/api/v1/upload/redeemFile/{couponSeriesId}"): lambda f: {
        "url": f"/coupon/api/v1/upload/redeemFile/{f['series']}",
        "data": UPLOAD_FORM,
        "files": {"file": ("r.csv", f"d,t,m,c\n{SAMPLE_MS},T,1,X\n".encode(), "text/csv")},
    },
    ("get", "/coupon/api/v1/upload/getUploadRedeemedCouponStatus/{couponSeriesId}"): lambda f: {
        "url": f"/coupon/api/v1/upload/getUploadRedeemedCouponStatus/{f['series']}"
    },
    ("get", "/v1/jobs/{jobId}"): lambda f: {"url": f"/v1/jobs/{f['job']}"},
    ("get", "/v1/jobs/{jobId}/errors"): lambda f: {"url": f"/v1/jobs/{f['job']}/errors"},
    ("get", "/v1/jobs/{jobId}/events"): lambda f: {"url": f"/v1/jobs/{f['job']}/events"},
    ("get", "/v1/jobs/{jobId}/errors.csv"): lambda f: {"url": f"/v1/jobs/{f['job']}/errors.csv"},
    ("post", "/v1/jobs/{jobId}/cancel"): lambda f: {"url": f"/v1/jobs/{f['job']}/cancel"},
    ("post", "/v1/jobs/{jobId}/revert"): lambda f: {"url": f"/v1/jobs/{f['job']}/revert"},
    ("get", "/v1/jobs/{jobId}/file"): lambda f: {"url": f"/v1/jobs/{f['job']}/file"},
    # The series, in the query string, of a new job.
    ("post", "/v1/jobs"): lambda f: {
        "url": "/v1/jobs",
        "params": {"couponSeriesId": f["series"]},
        "data": UPLOAD_FORM,
        "files": {"file": ("r.csv", f"d,t,m,c\n{SAMPLE_MS},T,1,X\n".encode(), "text/csv")},
    },
    ("get", "/v1/jobs/{jobId}/successes"): lambda f: {"url": f"/v1/jobs/{f['job']}/successes"},
    ("get", "/v1/jobs/{jobId}/successes.csv"): lambda f: {
        "url": f"/v1/jobs/{f['job']}/successes.csv"
    },
    ("get", "/v1/coupon-series/{id}"): lambda f: {"url": f"/v1/coupon-series/{f['series']}"},
    ("post", "/v1/coupon-series/{id}/coupons"): lambda f: {
        "url": f"/v1/coupon-series/{f['series']}/coupons",
        "json": {"coupons": [{"code": "NEW"}]},
    },
    ("post", "/v1/coupons/{couponId}/revoke"): lambda f: {
        "url": f"/v1/coupons/{f['coupon']}/revoke"
    },
    ("get", "/v1/coupons/{couponId}"): lambda f: {"url": f"/v1/coupons/{f['coupon']}"},
    # Ids in the query string count too.
    ("get", "/v1/coupons"): lambda f: {
        "url": "/v1/coupons",
        "params": {"seriesId": f["series"], "code": "FOREIGN"},
    },
    ("get", "/v1/jobs"): lambda f: {"url": "/v1/jobs", "params": {"couponSeriesId": f["series"]}},
    ("post", "/v1/uploads/preview"): lambda f: {
        "url": "/v1/uploads/preview",
        "params": {"couponSeriesId": f["series"]},
        "data": UPLOAD_FORM,
        "files": {"file": ("r.csv", f"d,t,m,c\n{SAMPLE_MS},T,1,FOREIGN\n".encode(), "text/csv")},
    },
}


def _operations_with_ids(client: TestClient) -> set[tuple[str, str]]:
    found = set()
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            if "{" in path or any(p["name"].lower().endswith("id") for p in params):
                found.add((method, path))
    return found


def test_every_route_with_an_id_has_a_tenancy_case(client: TestClient) -> None:
    assert _operations_with_ids(client) == set(ROUTES_WITH_IDS)


@pytest.mark.parametrize(
    "route", sorted(ROUTES_WITH_IDS), ids=[f"{m} {p}" for m, p in sorted(ROUTES_WITH_IDS)]
)
def test_another_orgs_object_is_404_never_403(
    client: TestClient, auth: dict[str, str], foreign: dict[str, int], route: tuple[str, str]
) -> None:
    request = ROUTES_WITH_IDS[route](foreign)
    method = route[0]
    url = request.pop("url")
    response = client.request(method.upper(), url, headers=auth, **request)
    assert response.status_code == 404, (route, response.status_code, response.text)
    assert response.json()["success"] is False
