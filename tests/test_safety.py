"""Files and answers that cannot hurt: stored names, formula escapes, error bodies, keys."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import keys
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series
from tests.helpers import ALL_COLUMNS_HEADERS, all_row_errors, job_id_of, upload, wait_for_job

pytestmark = pytest.mark.usefixtures("worker")

HEADERS = ALL_COLUMNS_HEADERS


@pytest.mark.parametrize(
    "name",
    [
        "../../../../etc/passwd",
        "/etc/cron.d/evil.csv",
        "..\\..\\windows\\system32\\x.csv",
        "nul\x00byte.csv",
        "x" * 1000 + ".csv",
        "ünïcode ✓.csv",
    ],
    ids=["dot-dot", "absolute", "backslashes", "nul", "very long", "unicode"],
)
def test_the_users_file_name_is_data_and_never_a_path(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], name: str
) -> None:
    series = create_series(org[0])
    content = f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,X\n".encode()
    response = client.post(
        f"/coupon/api/v1/upload/redeemFile/{series}",
        headers=auth,
        data={
            "customerIdentifier": "MOBILE",
            "couponIdentifier": "COUPON_CODE",
            "uploadHeaders": json.dumps({k: HEADERS[k] for k in list(HEADERS)[:4]}),
        },
        files={"file": (name, content, "text/csv")},
    )
    job = job_id_of(response)
    with admin_transaction() as session:
        stored, key = session.execute(
            text("SELECT file_name, storage_key FROM upload_jobs WHERE id = :id"), {"id": job}
        ).one()
    assert key.startswith(f"org-{org[0]}/") and key.endswith(".csv")
    assert ".." not in key and "\\" not in key and "\x00" not in key and len(key) < 100
    root = Path(get_settings().storage_url.removeprefix("file://"))
    assert (root / key).read_bytes() == content
    assert "\x00" not in stored and len(stored) <= 255
    if "\x00" not in name:  # (the client percent-encodes a NUL; the rest is kept as sent)
        assert stored == name[:255]


def test_a_file_name_beyond_the_part_header_limit_is_a_clear_400(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    response = client.post(
        f"/coupon/api/v1/upload/redeemFile/{series}",
        headers=auth,
        data={"customerIdentifier": "MOBILE"},
        files={"file": ("x" * 20_000 + ".csv", b"a,b\n", "text/csv")},
    )
    assert response.status_code == 400
    assert "header" in response.json()["message"]  # Capillary's shape, on its route


def test_formula_cells_survive_a_failed_upload_its_report_and_a_re_upload(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    org_id = org[0]
    series = create_series(org_id, any_user=True)
    create_customer(org_id, mobile="919988776655")
    create_coupon(org_id, series, "=HYPERLINK(1)")
    risky = {
        "till": "=cmd|' /C calc'!A0",
        "mobile": "+91 99887 76655",
        "bill": "-2+3",
        "number": "@SUM(A1:A9)",
        "details": "\t=1+1",
    }
    path = tmp_path / "risky.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        # The coupon code is wrong on purpose: the row fails and goes to the report.
        writer.writerow(
            [
                SAMPLE_MS,
                risky["till"],
                risky["mobile"],
                "=HYPERLINK(2)",
                risky["bill"],
                risky["number"],
                risky["details"],
            ]
        )
    failed = job_id_of(upload(client, auth, series, path, HEADERS))
    wait_for_job(client, auth, failed)
    assert [e["errorCode"] for e in all_row_errors(client, auth, failed)] == [702]

    report = client.get(f"/v1/jobs/{failed}/errors.csv", headers=auth).content.decode()
    rows = list(csv.reader(io.StringIO(report)))
    # Every formula-like cell is defused with a leading quote, as a spreadsheet shows it.
    assert rows[1][:7] == [
        str(SAMPLE_MS),
        "'" + risky["till"],
        "'" + risky["mobile"],
        "'=HYPERLINK(2)",
        "'" + risky["bill"],
        "'" + risky["number"],
        "'" + risky["details"],
    ]
    rows[1][3] = "'=HYPERLINK(1)"  # the fix, typed into the spreadsheet with its quote
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)

    again = job_id_of(upload(client, auth, series, fixed, HEADERS))
    assert wait_for_job(client, auth, again)["progress"]["rowsSucceeded"] == 1
    with admin_transaction() as session:
        stored = session.execute(
            text(
                "SELECT r.till_id, r.bill_id, r.bill_number, r.details, k.code "
                "FROM redemptions r JOIN coupons k ON k.id = r.coupon_id WHERE r.job_id = :j"
            ),
            {"j": again},
        ).one()
    # Trimmed, as every field is: the leading tab of the details goes with the trim.
    assert tuple(stored) == (risky["till"], risky["bill"], risky["number"], "=1+1", "=HYPERLINK(1)")


def test_an_unexpected_error_answers_500_without_trace_sql_or_paths(database_url: str) -> None:
    from api.app import create_app

    app: FastAPI = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError('SELECT secret FROM api_keys -- File "/work/main/core/x.py", line 1')

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.text
    assert response.json()["status"]["message"] == "internal error"
    for leak in ("SELECT", "api_keys", "Traceback", "/work/", ".py", "RuntimeError"):
        assert leak not in body


def test_a_revoked_key_is_refused_at_once(
    client: TestClient, org: tuple[int, str], database_url: str
) -> None:
    with admin_transaction() as session:
        issued = keys.create_key(session, org[0], label="to revoke")
    auth = {"Authorization": f"Bearer {issued.key}"}
    assert client.get("/v1/jobs", headers=auth).status_code == 200
    with admin_transaction() as session:
        assert keys.revoke_key(session, issued.id)
    refused = client.get("/v1/jobs", headers=auth)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"


def test_keys_are_long_random_and_stored_only_as_hashes(org: tuple[int, str]) -> None:
    with admin_transaction() as session:
        first = keys.create_key(session, org[0])
        second = keys.create_key(session, org[0])
        stored = session.execute(
            text("SELECT prefix, key_hash FROM api_keys WHERE id = :id"), {"id": first.id}
        ).one()
    assert first.key != second.key
    assert len(first.key) >= len("br_") + 43  # 32 random bytes, base64url
    assert stored.prefix == first.prefix and first.key.startswith(stored.prefix)
    assert stored.key_hash == keys.hash_key(first.key) and first.key not in stored.key_hash
