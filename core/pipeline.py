"""Running a job: claim it, stream the file from the checkpoint, apply chunk by chunk.

A call processes one slice (bounded in time) and says whether the job wants another; the
worker layer turns that into a new message, so a long job never holds one message or one
worker for its whole run.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, BinaryIO

import psycopg

from core import metrics
from core.apply import (
    ChunkApplier,
    LeaseLost,
    PreparedChunk,
    prepare_connection,
)
from core.csvstream import read_records, sniff_encoding
from core.db import get_engine, set_org, transaction
from core.guard import Guard
from core.jobs import lease, queries
from core.logs import log_context
from core.lookups import load_series
from core.prefetch import prefetched
from core.reverts.run import is_revert, run_revert
from core.rows import Candidate, CouponIdentifier, CustomerIdentifier, Failure, Mapping, RowChecker
from core.settings import get_settings
from core.storage import BlobMissing, get_storage

log = logging.getLogger(__name__)


class SliceResult(Enum):
    NOT_CLAIMED = "not_claimed"  # someone else holds it, or it has ended
    MORE = "more"  # the slice is over and the lease handed back: enqueue the job again
    DONE = "done"  # the job has ended (completed, cancelled or failed)
    LEASE_LOST = "lease_lost"  # another worker took over; nothing more was committed


def next_jobs(job_id: int) -> list[int]:
    """Jobs of the same org that may start now that this one has ended (its cap allowing)."""
    with transaction() as session:
        org_id = queries.org_of(session, job_id)
        if org_id is None:
            return []
        set_org(session, org_id)
        return lease.startable(session, org_id)


def run_slice(job_id: int, *, slice_seconds: float | None = None) -> SliceResult:
    settings = get_settings()
    budget = settings.slice_seconds if slice_seconds is None else slice_seconds
    token = uuid.uuid4().hex
    with transaction() as session:
        org_id = queries.org_of(session, job_id)
        if org_id is None:
            return SliceResult.NOT_CLAIMED
        set_org(session, org_id)
        job = lease.claim(session, job_id, token)
    if job is None:
        return SliceResult.NOT_CLAIMED
    with log_context(job_id=job_id, org_id=org_id):
        try:
            with _heartbeat(job_id, org_id, token):
                deadline = time.monotonic() + budget
                if is_revert(job):  # the same lease, slices and retries; its own chunks
                    return (
                        SliceResult.MORE if run_revert(job, token, deadline) else SliceResult.DONE
                    )
                return _process(job, token, deadline)
        except LeaseLost:
            log.warning("job %s: lease lost, stopping without committing", job_id)
            return SliceResult.LEASE_LOST
        except BlobMissing:
            # Only the store's word that the file is gone ends the job; any other missing
            # file on the way (a temporary one, a library's) is a failed slice, retried.
            with lease.lease_transaction(org_id) as session:
                lease.fail(session, job_id, "the uploaded file is no longer stored", token)
            return SliceResult.DONE
        except Exception as exc:
            # Let the lease lapse at once: the sweeper records the loss and retries soon.
            log.exception("job %s: slice failed", job_id)
            with lease.lease_transaction(org_id) as session:
                lease.release(session, job_id, token, f"{type(exc).__name__}: {exc}")
            raise


@contextmanager
def _heartbeat(job_id: int, org_id: int, token: str) -> Iterator[None]:
    """Keep the lease alive from a thread of its own, so a short lease survives a slow chunk.

    A chunk also renews the lease when it commits; this covers the time between. While a
    chunk holds the job row locked the beat leaves it alone: nobody can take the lease over
    half-way through a chunk anyway, and the chunk renews it as it commits.
    """
    stop = threading.Event()
    interval = max(get_settings().lease_seconds / 4, 0.5)

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with lease.lease_transaction(org_id) as session:
                    if not lease.heartbeat(session, job_id, token):
                        return
            except Exception:  # the next beat, or the next chunk's fencing, will tell
                log.warning("job %s: heartbeat failed", job_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _process(job: lease.ClaimedJob, token: str, deadline: float) -> SliceResult:
    """Apply chunks until the file ends, the job is cancelled or the slice's time is up.

    Two connections take turns: while chunk i commits on one, chunk i+1 is staged, resolved
    and given its static checks on the other, in a thread (psycopg releases the GIL while it
    waits). What earlier rows decide (duplicates, limits) is read and checked only in
    `commit`, under the series lock, once chunk i has committed: the chunks still apply one
    at a time, in file order.
    """
    settings = get_settings()
    mapping = Mapping(
        columns=dict(job.upload_headers),
        customer=CustomerIdentifier(job.customer_identifier),
        coupon=CouponIdentifier(job.coupon_identifier),
    )
    checker = RowChecker(mapping, job.created_at_ms, job.report_width)
    engine = get_engine()
    raw_conns = [engine.raw_connection(), engine.raw_connection()]
    try:
        conns: list[Any] = [raw.driver_connection for raw in raw_conns]
        for conn in conns:
            conn.rollback()
            prepare_connection(conn)
        with conns[0].transaction():
            conns[0].execute("SELECT set_config('app.org_id', %s, true)", (str(job.org_id),))
            series = load_series(conns[0], job.series_id)
            guard, stopped = _guard_of(conns[0], job.id)
        if stopped is not None:
            return _stop(job, token, stopped)
        applier = ChunkApplier(
            conns[0],
            job_id=job.id,
            org_id=job.org_id,
            token=token,
            series=series,
            checker=checker,
            customer_key=mapping.customer.key,
            lease_seconds=settings.lease_seconds,
            dry_run=job.dry_run,
            guard=guard,
        )

        def prepare(turn: int, chunk: Chunk) -> PreparedChunk:
            return applier.prepare(
                conns[turn % 2],
                chunk.items,
                first_record=chunk.first_record,
                end_offset=chunk.end_offset,
                next_record=chunk.next_record,
            )

        with (
            get_storage().open(job.storage_key, job.bytes_processed) as stream,
            prefetched(_chunks(stream, job, checker, settings.chunk_rows)) as chunks,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as ahead,
        ):
            first = next(chunks, None)
            ended = first is None  # no chunk is left in the file
            pending: Future[PreparedChunk] | None = (
                None if first is None else ahead.submit(prepare, 0, first)
            )
            turn = 0
            first_record = job.next_record  # where the chunk starts: its name in the logs
            try:
                while pending is not None:
                    prepared = pending.result()
                    pending = None
                    # Start the next chunk before this one commits, unless the slice is over.
                    if time.monotonic() < deadline:
                        following = next(chunks, None)
                        if following is None:
                            ended = True
                        else:
                            pending = ahead.submit(prepare, turn + 1, following)
                    with log_context(chunk=first_record):
                        started = time.monotonic()
                        outcome = applier.commit(prepared)
                        seconds = time.monotonic() - started
                        if outcome.cancelled:
                            return SliceResult.DONE
                        if not outcome.refused:
                            metrics.chunk_committed(
                                seconds, outcome.succeeded, outcome.failed, outcome.error_counts
                            )
                            log.info(
                                "chunk applied",
                                extra={
                                    "rows": outcome.succeeded + outcome.failed,
                                    "failed": outcome.failed,
                                    "seconds": round(seconds, 3),
                                },
                            )
                        if outcome.stopped is not None:
                            return _stop(job, token, outcome.stopped)
                    first_record = prepared.next_record
                    turn += 1
            finally:
                if pending is not None:
                    # A chunk prepared for nothing (cancelled, lease lost, an error): keep
                    # nothing of it.
                    try:
                        applier.abandon(pending.result())
                    except Exception:
                        log.warning("job %s: abandoning a prepared chunk", job.id, exc_info=True)
            # The slice's time is up: hand the rest on, unless there is no rest.
            if not ended and prepared.end_offset < job.file_size:
                with lease.lease_transaction(job.org_id) as session:
                    if not lease.hand_off(session, job.id, token):
                        raise LeaseLost(job.id)
                return SliceResult.MORE
        with lease.lease_transaction(job.org_id) as session:
            status = lease.finish(session, job.id, token)
        if status is None:
            raise LeaseLost(job.id)
        log.info("job %s: %s", job.id, status)
        return SliceResult.DONE
    finally:
        for raw in raw_conns:
            raw.close()


_GUARD = """
SELECT max_error_rate, rows_processed, rows_succeeded, rows_failed, error_counts, next_record
FROM upload_jobs WHERE id = %s
"""


def _guard_of(conn: psycopg.Connection[Any], job_id: int) -> tuple[Guard | None, str | None]:
    """The job's guard, and its reason to stop now: a slice that starts where a chunk that
    tripped it committed (the worker died before it could end the job) stops at once, as
    that chunk's own slice would have."""
    row = conn.execute(_GUARD, (job_id,)).fetchone()
    if row is None or row[0] is None:
        return None, None
    rate, processed, succeeded, failed, counts, next_record = row
    guard = Guard(float(rate))
    if not guard.trips(failed, processed):
        return guard, None
    reason = guard.stopped_later(
        job_id,
        failed=failed,
        processed=processed,
        succeeded=succeeded,
        last_row=next_record - 1,
        counts=counts,
    )
    return guard, reason


def _stop(job: lease.ClaimedJob, token: str, reason: str) -> SliceResult:
    """End the job FAILED by its guard (DESIGN.md, "Guards against a wrong upload")."""
    with lease.lease_transaction(job.org_id) as session:
        if not lease.fail(session, job.id, reason, token):
            raise LeaseLost(job.id)
    log.info("job %s: stopped by its guard: %s", job.id, reason)
    return SliceResult.DONE


@dataclass(slots=True)
class Chunk:
    items: list[Candidate | Failure]
    first_record: int  # the checkpoint it starts from: the job's next_record before it
    end_offset: int  # the checkpoint once this chunk commits
    next_record: int


def _chunks(
    stream: BinaryIO, job: lease.ClaimedJob, checker: RowChecker, size: int
) -> Generator[Chunk, None, None]:
    """The job's rows from its checkpoint on, checked, `size` data records at a time."""
    offset = job.bytes_processed
    if offset == 0:
        _, offset = sniff_encoding(stream.read(4))
        stream.seek(offset)
    # The header is the first non-blank record; it is behind us once we have moved on.
    header_pending = job.has_header and job.next_record == 1
    check = checker.check
    items: list[Candidate | Failure] = []
    last_number, last_offset = job.next_record - 1, offset
    first_record = job.next_record
    records = read_records(
        stream,
        encoding=job.encoding,
        delimiter=job.delimiter,
        offset=offset,
        first_number=job.next_record,
    )
    for record in records:
        last_number, last_offset = record.number, record.end_offset
        if record.is_blank:
            continue
        if header_pending:
            header_pending = False
            continue
        items.append(check(record.number, record.cells, record.damage))
        if len(items) >= size:
            yield Chunk(items, first_record, record.end_offset, record.number + 1)
            items = []
            first_record = record.number + 1
    if items:
        yield Chunk(items, first_record, last_offset, last_number + 1)
