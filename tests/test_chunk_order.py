"""Chunks apply in file order even though the next chunk is prepared while one commits."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from core import pipeline
from core.settings import get_settings
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_job, create_series


def outcomes(job_id: int, rows: int, *, dry_run: bool) -> list[int | None]:
    """Each data row's error code (None: applied, or would be in a dry run), rows 2..rows+1."""
    with admin_transaction() as session:
        codes = dict(
            session.execute(
                text("SELECT row_number, code FROM job_row_errors WHERE job_id = :j"),
                {"j": job_id},
            ).all()
        )
        applied = {
            n
            for (n,) in session.execute(
                text("SELECT row_number FROM redemptions WHERE job_id = :j"), {"j": job_id}
            )
        }
        left = session.execute(
            text("SELECT count(*) FROM dry_run_redemptions WHERE job_id = :j"), {"j": job_id}
        ).scalar_one()
        succeeded = session.execute(
            text("SELECT rows_succeeded FROM upload_jobs WHERE id = :j"), {"j": job_id}
        ).scalar_one()
    assert left == 0  # a dry run forgets its would-be redemptions when it ends
    assert not applied & codes.keys()
    every = range(2, rows + 2)
    if dry_run:
        assert applied == set()
    else:
        assert applied == {n for n in every if n not in codes}
    assert succeeded == rows - len(codes)
    return [codes.get(n) for n in every]


def counters_match_redemptions(org_id: int) -> None:
    with admin_transaction() as session:
        mismatched = session.execute(
            text(
                """
                SELECT k.id FROM coupons k
                LEFT JOIN coupon_counters n ON n.coupon_id = k.id
                WHERE k.org_id = :o AND coalesce(n.redemption_count, 0)
                    <> (SELECT count(*) FROM redemptions r WHERE r.coupon_id = k.id)
                """
            ),
            {"o": org_id},
        ).all()
    assert mismatched == []


def run_one_row_a_chunk(job_id: int, monkeypatch: pytest.MonkeyPatch, *, dry_run: bool) -> None:
    # One row a chunk: every row is prepared while the row before it commits.
    monkeypatch.setattr(get_settings(), "chunk_rows", 1)
    if dry_run:
        with admin_transaction() as session:
            session.execute(
                text("UPDATE upload_jobs SET dry_run = true WHERE id = :j"), {"j": job_id}
            )
    assert pipeline.run_slice(job_id, slice_seconds=120) is pipeline.SliceResult.DONE


# A dry run must decide every row as the real run does, earlier chunks included.
real_and_dry = pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry-run"])


@real_and_dry
def test_each_chunk_sees_the_duplicates_and_repeats_of_the_chunk_before(
    org: tuple[int, str], monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    org_id = org[0]
    series = create_series(org_id)  # single use, the same customer may not redeem twice
    first = create_customer(org_id, mobile="9000000001")
    second = create_customer(org_id, mobile="9000000002")
    create_coupon(org_id, series, "ONE", issued_to=first)
    create_coupon(org_id, series, "TWO", issued_to=second)
    rows = [
        f"{SAMPLE_MS},T1,9000000001,ONE",
        f"{SAMPLE_MS},T1,9000000001,ONE",  # the row before, again: 790
        f"{SAMPLE_MS + 1},T1,9000000001,ONE",  # same customer, same coupon: 716
        f"{SAMPLE_MS},T1,9000000002,TWO",
        f"{SAMPLE_MS + 5},T2,9000000002,TWO",  # 716
    ]
    job = create_job(org_id, series, ["date,till,mobile,code", *rows])
    run_one_row_a_chunk(job, monkeypatch, dry_run=dry_run)
    assert outcomes(job, len(rows), dry_run=dry_run) == [None, 790, 716, None, 716]
    counters_match_redemptions(org_id)


@real_and_dry
def test_coupon_and_customer_limits_count_the_chunks_before(
    org: tuple[int, str], monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    org_id = org[0]
    series = create_series(
        org_id,
        max_redemptions_per_coupon=2,
        same_user_multiple_redeem=True,
        max_redemptions_per_customer=3,
    )
    customer = create_customer(org_id, mobile="9000000003")
    create_coupon(org_id, series, "MULTI", issued_to=customer)
    create_coupon(org_id, series, "OTHER", issued_to=customer)
    rows = [
        f"{SAMPLE_MS},T1,9000000003,MULTI",
        f"{SAMPLE_MS + 1},T1,9000000003,MULTI",
        f"{SAMPLE_MS + 2},T1,9000000003,MULTI",  # its third use, limit 2: 714
        f"{SAMPLE_MS + 3},T1,9000000003,OTHER",  # the customer's third: allowed
        f"{SAMPLE_MS + 4},T1,9000000003,OTHER",  # the customer's fourth, limit 3: 736
    ]
    job = create_job(org_id, series, ["date,till,mobile,code", *rows])
    run_one_row_a_chunk(job, monkeypatch, dry_run=dry_run)
    assert outcomes(job, len(rows), dry_run=dry_run) == [None, None, 714, None, 736]
    counters_match_redemptions(org_id)


@real_and_dry
def test_a_single_use_coupon_redeemed_in_one_chunk_is_711_in_the_next(
    org: tuple[int, str], monkeypatch: pytest.MonkeyPatch, dry_run: bool
) -> None:
    org_id = org[0]
    series = create_series(org_id, same_user_multiple_redeem=True, any_user=True)
    create_customer(org_id, mobile="9000000004")
    create_customer(org_id, mobile="9000000005")
    create_coupon(org_id, series, "ONCE")
    rows = [
        f"{SAMPLE_MS},T1,9000000004,ONCE",
        f"{SAMPLE_MS + 1},T1,9000000005,ONCE",  # another customer: 711
        f"{SAMPLE_MS + 2},T1,9000000004,ONCE",  # the same one again: 711
    ]
    job = create_job(org_id, series, ["date,till,mobile,code", *rows])
    run_one_row_a_chunk(job, monkeypatch, dry_run=dry_run)
    assert outcomes(job, len(rows), dry_run=dry_run) == [None, 711, 711]
    counters_match_redemptions(org_id)
