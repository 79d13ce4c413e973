"""The lease: one holder at a time, fencing on every chunk, slices, and the sweeper."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from core import pipeline
from core.apply import LeaseLost, prepare_connection
from core.db import transaction
from core.jobs.cancel import request_cancel
from core.jobs.lease import claim, release
from core.jobs.sweep import end_frozen_copies, sweep
from core.rows import Candidate, Failure
from core.settings import get_settings
from core.storage import get_storage
from tests.appliers import apply_chunk, chunk_applier, claimed_applier
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, bulk_customers_and_coupons, create_job, create_series


def make_job(org_id: int, series_id: int, rows: int, database_url: str) -> int:
    """A job over `rows` good rows, never enqueued (the tests drive it)."""
    base = 4_000_000_000 + org_id * 100_000
    if rows:
        bulk_customers_and_coupons(database_url, org_id, series_id, rows, mobile_base=base)
    lines = (f"{SAMPLE_MS + i},T1,{base + i},C{i:08d}" for i in range(rows))
    return create_job(org_id, series_id, ["date,till,mobile,code", *lines])


def job_row(job_id: int) -> dict[str, object]:
    with admin_transaction() as session:
        row = session.execute(
            text("SELECT * FROM upload_jobs WHERE id = :id"), {"id": job_id}
        ).one()
    return dict(row._mapping)


def lapse(job_id: int) -> None:
    """The holder's lease runs out (as when its worker died a lease ago)."""
    with admin_transaction() as session:
        session.execute(
            text(
                "UPDATE upload_jobs SET lease_expires_at = clock_timestamp() - interval '1 s' "
                "WHERE id = :id"
            ),
            {"id": job_id},
        )


@pytest.fixture
def series(org: tuple[int, str]) -> int:
    return create_series(org[0])


def test_a_held_lease_cannot_be_claimed_twice(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    job = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        assert claim(session, job, "first") is not None
    with admin_transaction() as session:
        assert claim(session, job, "second") is None
    assert job_row(job)["lease_owner"] == "first"


def test_a_chunk_commits_only_under_the_lease_it_was_started_with(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    job_id = make_job(org[0], series, 3, database_url)
    with admin_transaction() as session:
        claimed = claim(session, job_id, "old-owner")
    assert claimed is not None
    # The lease lapses, the sweeper records the loss, and another worker takes the job over.
    lapse(job_id)
    with admin_transaction() as session:
        assert job_id in sweep(session)
        assert claim(session, job_id, "new-owner") is not None

    with chunk_applier(claimed, org[0], series, "old-owner") as applier:
        row = applier.checker.check(2, [str(SAMPLE_MS), "T1", "1", "C00000000"], None)
        with pytest.raises(LeaseLost):
            apply_chunk(applier, [row], first_record=1, end_offset=10, next_record=3)
    after = job_row(job_id)
    assert after["rows_processed"] == 0
    assert after["bytes_processed"] == 0
    with admin_transaction() as session:
        count = session.execute(
            text("SELECT count(*) FROM redemptions WHERE job_id = :id"), {"id": job_id}
        ).scalar_one()
    assert count == 0


def test_a_chunk_commits_only_from_the_checkpoint_it_starts_at(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    # A chunk applied twice, or after a gap, finds the job's checkpoint elsewhere and
    # commits nothing: that, not a constraint on (job_id, row_number), keeps rows exactly once.
    job_id = make_job(org[0], series, 2, database_url)
    base = 4_000_000_000 + org[0] * 100_000
    with claimed_applier(job_id, org[0], series, "owner") as applier:

        def record(number: int, coupon: int) -> Candidate | Failure:
            cells = [str(SAMPLE_MS + coupon), "T1", str(base + coupon), f"C{coupon:08d}"]
            return applier.checker.check(number, cells, None)

        first = [record(2, 0)]  # the header is record 1: the job starts at next_record 1
        outcome = apply_chunk(applier, first, first_record=1, end_offset=40, next_record=3)
        assert (outcome.succeeded, outcome.failed) == (1, 0)
        for again in (1, 4):  # the same chunk again; a chunk that skips record 3
            with pytest.raises(LeaseLost):
                apply_chunk(
                    applier, [record(3, 1)], first_record=again, end_offset=80, next_record=4
                )
        # From the checkpoint, the next chunk applies.
        outcome = apply_chunk(applier, [record(3, 1)], first_record=3, end_offset=80, next_record=4)
        assert (outcome.succeeded, outcome.failed) == (1, 0)
    after = job_row(job_id)
    assert (after["rows_processed"], after["next_record"]) == (2, 4)
    with admin_transaction() as session:
        assert (
            session.execute(
                text("SELECT count(*) FROM redemptions WHERE job_id = :id"), {"id": job_id}
            ).scalar_one()
            == 2
        )


def test_slices_hand_the_job_on_and_it_completes_exactly_once(
    org: tuple[int, str], series: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "chunk_rows", 1000)
    job = make_job(org[0], series, 5_500, database_url)
    results = []
    for _ in range(20):
        result = pipeline.run_slice(job, slice_seconds=0)
        results.append(result)
        if result is pipeline.SliceResult.DONE:
            break
        # Between slices the job is RUNNING with no lease: anyone may claim it.
        row = job_row(job)
        assert (row["status"], row["lease_owner"]) == ("RUNNING", None)
    assert results == [pipeline.SliceResult.MORE] * 5 + [pipeline.SliceResult.DONE]
    row = job_row(job)
    assert row["status"] == "COMPLETED"
    assert row["rows_succeeded"] == 5_500
    with admin_transaction() as session:
        assert session.execute(
            text("SELECT count(*), count(DISTINCT row_number) FROM redemptions WHERE job_id = :j"),
            {"j": job},
        ).one() == (5_500, 5_500)


def test_the_sweeper_enqueues_a_job_whose_message_it_no_longer_trusts_once(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    job = make_job(org[0], series, 1, database_url)
    stale = get_settings().queued_requeue_seconds + 5
    with admin_transaction() as session:
        session.execute(
            text(
                "UPDATE upload_jobs SET created_at = now() - make_interval(secs => :s), "
                "enqueued_at = NULL WHERE id = :id"
            ),
            {"s": stale, "id": job},
        )
        assert job in sweep(session)
        # Just enqueued again: not again at the next sweep, unless Redis lost its messages.
        assert job not in sweep(session)
        assert job in sweep(session, stale_seconds=0)


def test_a_lapsed_lease_is_a_loss_the_sweeper_retries_at_once_and_the_claim_counts(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    job = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        assert claim(session, job, "crashed-worker") is not None
    with admin_transaction() as session:
        # Lapsed, but its loss not recorded yet: nobody may take it over but through the
        # sweeper, the one place that counts losses.
        lapse(job)
        assert claim(session, job, "eager") is None
    with admin_transaction() as session:
        assert job in sweep(session)  # the first loss at a record: no wait
    row = job_row(job)
    assert (row["lease_owner"], row["stalled_losses"], row["lost_at_record"]) == (None, 1, 1)
    assert row["status"] == "RUNNING" and row["attempts"] == 1
    with admin_transaction() as session:
        assert claim(session, job, "next-worker") is not None
    row = job_row(job)
    assert (row["attempts"], row["retry_after"], row["lease_owner"]) == (2, None, "next-worker")


def test_losses_at_the_same_record_back_off_and_fail_the_job_naming_the_record(
    org: tuple[int, str], series: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_attempts", 3)
    lease = get_settings().lease_seconds
    job = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        assert claim(session, job, "first") is not None
        release(session, job, "first", "RaiseError: the chunk from row 2 cannot commit")
    with admin_transaction() as session:
        assert job in sweep(session)
        assert claim(session, job, "second") is not None
    lapse(job)
    with admin_transaction() as session:
        # The second loss with no chunk committed since the first: the retry waits a lease.
        assert job not in sweep(session)
        waits = session.execute(
            text(
                "SELECT extract(epoch FROM retry_after - clock_timestamp()) FROM upload_jobs "
                "WHERE id = :id"
            ),
            {"id": job},
        ).scalar_one()
        assert lease - 5 < float(waits) <= lease
        assert claim(session, job, "too-soon") is None
        session.execute(
            text("UPDATE upload_jobs SET retry_after = clock_timestamp() WHERE id = :id"),
            {"id": job},
        )
        assert job in sweep(session)
        assert claim(session, job, "third") is not None
    lapse(job)
    with admin_transaction() as session:
        assert job not in sweep(session)
    row = job_row(job)
    assert (row["status"], row["attempts"], row["stalled_losses"]) == ("FAILED", 3, 3)
    assert row["failure_reason"] == (
        "stopped 3 times at data record 1 (row 1 of the file) without getting past it (its "
        "worker crashed, timed out or failed there each time); giving up. Last error: "
        "RaiseError: the chunk from row 2 cannot commit"
    )


def test_a_loss_after_a_committed_chunk_starts_the_count_again(
    org: tuple[int, str], series: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_attempts", 2)
    job_id = make_job(org[0], series, 3, database_url)
    base = 4_000_000_000 + org[0] * 100_000
    # Each attempt commits a chunk of one row (records 2, 3, 4: the header is record 1),
    # then its worker is lost.
    for i, (start, token) in enumerate(((1, "first"), (3, "second"), (4, "third"))):
        number = i + 2
        with claimed_applier(job_id, org[0], series, token) as applier:
            cells = [str(SAMPLE_MS + i), "T1", str(base + i), f"C{i:08d}"]
            item = applier.checker.check(number, cells, None)
            outcome = apply_chunk(
                applier, [item], first_record=start, end_offset=number * 30, next_record=number + 1
            )
            assert outcome.succeeded == 1
        lapse(job_id)
        with admin_transaction() as session:
            assert job_id in sweep(session)  # never twice at a record: never a wait
        row = job_row(job_id)
        assert (row["status"], row["stalled_losses"], row["lost_at_record"]) == (
            "RUNNING",
            1,
            number + 1,
        )
    assert job_row(job_id)["attempts"] == 3  # more than max_attempts, none of them stuck


def test_the_sweeper_passes_over_a_job_whose_holder_is_inside_a_chunk(
    org: tuple[int, str], series: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_attempts", 1)
    job = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        assert claim(session, job, "slow-chunk") is not None
    lapse(job)
    # The holder's chunk has the job row locked (as the fence does) and outlasts the lease.
    with psycopg.connect(database_url) as chunk:
        chunk.execute("SELECT 1 FROM upload_jobs WHERE id = %s FOR UPDATE", (job,))
        with admin_transaction() as session:
            assert job not in sweep(session)
            assert claim(session, job, "intruder") is None
        # It commits, renewing the lease from the moment it writes.
        chunk.execute(
            "UPDATE upload_jobs SET lease_expires_at = clock_timestamp() + interval '60 s' "
            "WHERE id = %s",
            (job,),
        )
    with admin_transaction() as session:
        assert job not in sweep(session)
    row = job_row(job)
    assert (row["status"], row["lease_owner"], row["stalled_losses"]) == (
        "RUNNING",
        "slow-chunk",
        0,
    )


def test_a_job_whose_file_is_gone_fails_with_a_reason(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    job = make_job(org[0], series, 1, database_url)
    get_storage().delete(str(job_row(job)["storage_key"]))
    assert pipeline.run_slice(job) is pipeline.SliceResult.DONE
    row = job_row(job)
    assert row["status"] == "FAILED"
    assert "no longer stored" in str(row["failure_reason"])


def test_another_missing_file_on_the_way_is_a_failed_slice_not_the_jobs_end(
    org: tuple[int, str], series: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(org[0], series, 1, database_url)

    def lost_elsewhere(*_: object, **__: object) -> None:
        raise FileNotFoundError("/tmp/some-library-temp-file")

    monkeypatch.setattr(pipeline, "read_records", lost_elsewhere)
    with pytest.raises(FileNotFoundError):
        pipeline.run_slice(job)
    row = job_row(job)
    assert row["status"] == "RUNNING"  # released for the sweeper to retry, not FAILED
    assert "some-library-temp-file" in str(row["failure_reason"])
    monkeypatch.undo()
    with admin_transaction() as session:
        session.execute(text("UPDATE upload_jobs SET retry_after = NULL WHERE id = :j"), {"j": job})
        sweep(session)
    assert pipeline.run_slice(job) is pipeline.SliceResult.DONE
    assert job_row(job)["status"] == "COMPLETED"


def test_the_sweeper_ends_a_session_frozen_in_the_middle_of_a_chunks_copy(
    org: tuple[int, str], series: int, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Such a session waits for its client with the job row locked, which no idle timeout ends.
    monkeypatch.setattr(get_settings(), "lease_seconds", 1)
    job = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        assert claim(session, job, "frozen") is not None
    frozen = psycopg.connect(get_settings().database_url)  # the service's role, as a worker
    try:
        prepare_connection(frozen)
        frozen.execute("SELECT set_config('app.org_id', %s, true)", (str(org[0]),))
        frozen.execute("SELECT 1 FROM upload_jobs WHERE id = %s FOR UPDATE", (job,))
        pid = frozen.info.backend_pid
        with (
            frozen.cursor() as cur,
            cur.copy("COPY br_err (row_number, code, message, cells) FROM STDIN"),
        ):
            time.sleep(0.3)
            with transaction() as session:  # younger than a lease: left alone
                assert end_frozen_copies(session) == 0
            time.sleep(1.2)
            with transaction() as session:
                assert job in sweep(session)
            with admin_transaction() as session:
                assert (
                    session.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                    ).scalar_one()
                    == 0
                )
    except psycopg.OperationalError:
        pass  # the frozen session's end, as its worker would find it on waking
    finally:
        frozen.close()
    row = job_row(job)
    assert (row["lease_owner"], row["stalled_losses"]) == (None, 1)


def test_a_job_waiting_for_its_retry_is_cancelled_at_once(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    job = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        assert claim(session, job, "lost") is not None
        session.execute(
            text(
                "UPDATE upload_jobs SET lost_at_record = next_record, stalled_losses = 1, "
                "lease_expires_at = clock_timestamp() - interval '1 s' WHERE id = :id"
            ),
            {"id": job},
        )
        assert job not in sweep(session)  # lost twice at its first record: it waits
    assert job_row(job)["retry_after"] is not None
    with transaction(org[0]) as session:
        cancelled = request_cancel(session, org[0], job)
        assert (cancelled.status, cancelled.retry_after) == ("CANCELLED", None)
    row = job_row(job)
    assert (row["status"], row["lease_owner"]) == ("CANCELLED", None)


def test_a_cancelled_dry_run_ended_by_a_claim_forgets_its_would_be_redemptions(
    org: tuple[int, str], series: int, database_url: str
) -> None:
    """The cancel came while a worker held the dry run, which handed it on before its next
    chunk could end it: the next claim ends it, and its would-be redemptions go with it."""
    job_id = make_job(org[0], series, 1, database_url)
    with admin_transaction() as session:
        session.execute(
            text(
                "UPDATE upload_jobs SET dry_run = true, status = 'RUNNING', "
                "cancel_requested = true, lease_owner = NULL WHERE id = :id"
            ),
            {"id": job_id},
        )
        session.execute(
            text(
                "INSERT INTO dry_run_redemptions (job_id, row_number, org_id, coupon_id, "
                "customer_id, redeemed_ms, till_id, bill_id, bill_number) "
                "VALUES (:id, 2, :org, 1, 1, :ms, 'T1', '', '')"
            ),
            {"id": job_id, "org": org[0], "ms": SAMPLE_MS},
        )
    with admin_transaction() as session:
        assert claim(session, job_id, "next-worker") is None
    assert job_row(job_id)["status"] == "CANCELLED"
    with admin_transaction() as session:
        left = session.execute(
            text("SELECT count(*) FROM dry_run_redemptions WHERE job_id = :id"), {"id": job_id}
        ).scalar_one()
    assert left == 0
