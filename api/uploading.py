"""Taking an upload over HTTP, the one way both upload routes do: stream, judge, make the job.

`POST /coupon/api/v1/upload/redeemFile/{couponSeriesId}` and `POST /v1/jobs` take the same
multipart form and make the same job (DESIGN.md, Uploads); they differ only in their answer,
which is their route's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import DBAPIError

from api import multipart
from api.deps import Uploader
from api.doorbell import enqueue_job
from core import metrics, reference, uploads
from core.db import transaction
from core.errors import DomainError, ErrorKind, FieldProblem
from core.models import UploadJob
from core.storage import get_storage

log = logging.getLogger(__name__)

T = TypeVar("T")


async def accept_upload(request: Request, who: Uploader, series_id: int) -> UploadJob:
    """The job of this upload request: made (its file stored, then enqueued after the commit),
    or the one an earlier request with the same Idempotency-Key made. Raises DomainError."""
    org_id = who.org_id
    key = idempotency_key(request)

    def look_up() -> UploadJob | None:
        with transaction(org_id) as session:
            reference.get_series(session, org_id, series_id)
            return uploads.job_for_key(session, org_id, key) if key is not None else None

    # Before a byte of the file is read: a key already used for another series is a 409 now,
    # and a key that made a job already means that nothing will be stored, whatever follows.
    earlier = await run_in_threadpool(_once_more_if_disconnected, look_up)
    if earlier is not None and earlier.series_id != series_id:
        raise uploads.key_conflict()

    storage = get_storage()
    sink = uploads.FileSink(storage, org_id, store=earlier is None)
    try:
        form = await multipart.read_form(request, sink)
        fp = uploads.fingerprint(org_id, series_id, form, sink.sha256.hexdigest()) if key else None
        if earlier is not None:
            if earlier.request_fingerprint != fp:
                raise uploads.key_conflict()
            job, created = earlier, False
        else:
            # In the threadpool: judging may resolve the callbackUrl's host.
            plan = await run_in_threadpool(uploads.judge, form, sink)

            def persist() -> tuple[UploadJob, bool]:
                with transaction(org_id) as session:
                    if key is not None and fp is not None:
                        found = uploads.existing_for_key(session, org_id, key, fp)
                        if found is not None:
                            return found, found.storage_key == sink.key
                    job = uploads.create_job(
                        session,
                        org_id=org_id,
                        series_id=series_id,
                        plan=plan,
                        sink=sink,
                        file_name=form.file_name or "upload.csv",
                        idempotency_key=key,
                        request_fingerprint=fp,
                        key_id=who.key_id,
                        key_label=who.key_label,
                    )
                    return job, job.storage_key == sink.key

            job, created = await run_in_threadpool(_once_more_if_disconnected, persist)
    except Exception:
        await run_in_threadpool(sink.discard)
        raise
    except BaseException:
        sink.discard()  # cancelled: no awaiting any more
        raise

    if created:
        metrics.upload_stored(sink.size)
        # After the commit, never before: a worker must find the job it is told about.
        try:
            await run_in_threadpool(enqueue_job, job.id)
        except Exception:
            log.warning("job %s: could not enqueue; the sweeper will", job.id, exc_info=True)
    elif sink.stores:
        # A concurrent request with the same key made the job first: ours is not needed.
        await run_in_threadpool(storage.delete, sink.key)
    return job


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        raise DomainError(
            ErrorKind.INVALID,
            "Idempotency-Key must be 1 to 255 characters",
            [FieldProblem("Idempotency-Key", "1 to 255 characters")],
        )
    return key


def _once_more_if_disconnected(work: Callable[[], T]) -> T:
    """Run `work` (one transaction), and once more on a new connection when the server closed
    the first one under it (a restart, a failover, a terminated backend): the file is stored
    already, and a client should not have to send it again for that. A second loss is a 503
    (api/errors.py). A commit whose answer was lost may have made the job: the retry then finds
    it by its Idempotency-Key; without one, its rows would all be 790 in a second job."""
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("the database connection was lost during an upload; trying once more")
        return work()
