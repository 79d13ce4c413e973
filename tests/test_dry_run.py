"""dryRun=true: every check of a real run, the same counts and errors CSV, nothing applied."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS
from tests.helpers import job_id_of, upload, wait_for_job
from tests.test_pipeline import World

pytestmark = pytest.mark.usefixtures("worker")

HEADERS = {
    "redeemedDateInMillis": 0,
    "redeemedAt": 1,
    "mobile": 2,
    "couponCode": 3,
    "billId": 4,
    "billNumber": 5,
}


def org_state(org_id: int) -> tuple[int, int, int]:
    """Redemptions, their counters' total, and would-be redemptions left, in the org."""
    with admin_transaction() as session:
        row = session.execute(
            text(
                """
                SELECT (SELECT count(*) FROM redemptions WHERE org_id = :o),
                    (SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters
                     WHERE org_id = :o),
                    (SELECT count(*) FROM dry_run_redemptions WHERE org_id = :o)
                """
            ),
            {"o": org_id},
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_a_dry_run_reports_what_the_real_run_then_does_and_applies_nothing(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    world = World(org[0])
    m1, m2, _, m4 = world.mobiles
    ms = SAMPLE_MS
    lines = [
        "date,till,mobile,code,bill,number",
        f"{ms},T1,{m1},K1,B1,N1",  # good
        f"{ms},T1,{m1},K1,B1,N1",  # 790: the row before, again
        f"{ms + 1},T1,{m1},K1,B1,N1",  # 716
        f"{ms},T1,7000000001,FIX2,B1,N1",  # 701
        f"{ms},T1,{m1},NOPE,B1,N1",  # 702
        f"{ms},T1,{m1},REV,B1,N1",  # 660
        f"{ms},T1,{m1},K3,B1,N1",  # 703
        f"1767225600000,T1,{m1},K5,B1,N1",  # 712
        f"{ms},T1,{m1},K4,B1,N1",  # 713
        f"{ms},T9,{m1},K5,B1,N1",  # 735
        f"abc,T1,{m4},FIX3,B1,N1",  # 729
        f"{ms},T2,{m1},K5,B2,N2",  # good: the customer's second
        f"{ms},T2,{m1},K6,B3,N3",  # 736: the series allows two a customer
        f"{ms},T1,{m2},FIX1,B9,N9",  # 703
    ]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")

    dry = job_id_of(upload(client, auth, world.series, path, HEADERS, extra={"dryRun": "true"}))
    dry_doc = wait_for_job(client, auth, dry)
    assert dry_doc["dryRun"] is True
    assert dry_doc["status"] == "COMPLETED_WITH_ERRORS"
    assert org_state(org[0]) == (0, 0, 0)
    dry_report = client.get(f"/v1/jobs/{dry}/errors.csv", headers=auth).text

    real = job_id_of(upload(client, auth, world.series, path, HEADERS))
    real_doc = wait_for_job(client, auth, real)
    assert real_doc["dryRun"] is False
    real_report = client.get(f"/v1/jobs/{real}/errors.csv", headers=auth).text

    assert dry_doc["progress"]["rowsSucceeded"] == real_doc["progress"]["rowsSucceeded"] == 2
    assert dry_doc["progress"]["rowsFailed"] == real_doc["progress"]["rowsFailed"] == 12
    assert dry_doc["errorSummary"] == real_doc["errorSummary"]
    assert dry_report == real_report
    codes = [row[-3] for row in list(csv.reader(io.StringIO(real_report)))[1:]]
    assert codes == [
        "790", "716", "701", "702", "660", "703", "712", "713", "735", "729", "736", "703"
    ]  # fmt: skip
    # Only the real run redeemed, each coupon's counter included.
    assert org_state(org[0]) == (2, 2, 0)


def test_dry_run_must_be_true_or_false(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    world = World(org[0])
    path = tmp_path / "one.csv"
    path.write_text(f"{SAMPLE_MS},T1,{world.mobiles[0]},K1,B,N\n")
    answer = upload(client, auth, world.series, path, HEADERS, extra={"dryRun": "maybe"})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["field"] == "dryRun"
