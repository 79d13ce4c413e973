"""Asking for a revert: which imports may be reverted, one revert an import, the Idempotency-Key.

A revert names the file it undoes: it copies the import's file columns, except the storage key,
which is empty for it (migration 0012: a revert has no file of its own). Its progress counts the
redemptions it removed: `rowsProcessed` = `rowsSucceeded`, `rowsFailed` 0 (core/reverts/run.py).
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DomainError, ErrorKind, FieldProblem
from core.jobs import queries
from core.models import ApiKey, UploadJob
from core.models.jobs import TERMINAL_STATUSES
from core.uploads.create import existing_for_key


def fingerprint(org_id: int, job_id: int) -> str:
    """What makes two revert requests "the same" for Idempotency-Key: the org and the import.

    It cannot equal an upload's (those hash other fields), so a key that made an upload is a
    409 here, as a key reused for another request is everywhere."""
    payload = json.dumps({"org": org_id, "revert": job_id})
    return hashlib.sha256(payload.encode()).hexdigest()


def request_revert(
    session: Session,
    org_id: int,
    job_id: int,
    *,
    idempotency_key: str | None,
    key_id: int | None,
) -> tuple[UploadJob, bool]:
    """The revert job of the import `job_id`, and whether this request made it (to enqueue).

    A second request with the same Idempotency-Key gets the same revert job back, whatever it
    has become since; without one, an import that has a revert already is a 409 naming it.
    The partial unique index `ux_upload_jobs_one_revert` decides between racing requests.
    """
    fp = fingerprint(org_id, job_id)
    if idempotency_key is not None:
        earlier = existing_for_key(session, org_id, idempotency_key, fp)
        if earlier is not None:
            return earlier, False
    target = queries.get_job(session, org_id, job_id)  # another org's job: 404
    _refuse_unless_revertible(session, target)
    revert = UploadJob(
        org_id=org_id,
        series_id=target.series_id,
        status="QUEUED",
        kind="REVERT",
        reverts_job_id=target.id,
        uploaded_by_key_id=key_id,
        uploaded_by_label=None if key_id is None else _label(session, key_id),
        # The import's file columns, so that the revert's document names the file it undoes.
        customer_identifier=target.customer_identifier,
        coupon_identifier=target.coupon_identifier,
        upload_headers=target.upload_headers,
        delimiter=target.delimiter,
        has_header=target.has_header,
        encoding=target.encoding,
        report_header=target.report_header,
        file_name=target.file_name,
        file_size=target.file_size,
        file_sha256=target.file_sha256,
        storage_key="",
        idempotency_key=idempotency_key,
        request_fingerprint=fp,
    )
    try:
        # The savepoint first, then the insert (core/uploads/create.py says why).
        with session.begin_nested():
            session.add(revert)
            session.flush()
    except IntegrityError:
        # A concurrent request won: with our key (the same revert), or another revert of it.
        if idempotency_key is not None:
            earlier = existing_for_key(session, org_id, idempotency_key, fp)
            if earlier is not None:
                return earlier, False
        live = _live_revert(session, target.id)
        if live is None:
            raise
        raise _already_reverted(target, live) from None
    session.refresh(revert)
    return revert, True


def refuse_cancel(job: UploadJob) -> None:
    """A revert is cancel-free (DESIGN.md): half a revert is an import half undone, which
    nobody asked for; a revert that should not have run is undone by uploading the file again."""
    if job.kind == "REVERT":
        raise DomainError(
            ErrorKind.CONFLICT,
            f"job {job.id} is a revert (of job {job.reverts_job_id}), which cannot be cancelled;"
            " once it has ended, upload the file again to apply its rows again",
        )


def _refuse_unless_revertible(session: Session, target: UploadJob) -> None:
    if target.kind == "REVERT":
        raise DomainError(
            ErrorKind.CONFLICT,
            f"job {target.id} is itself a revert (of job {target.reverts_job_id}):"
            " a revert cannot be reverted; upload the file again instead",
        )
    if target.dry_run:
        raise DomainError(
            ErrorKind.CONFLICT, f"job {target.id} is a dry run: it applied nothing to revert"
        )
    if target.status not in TERMINAL_STATUSES:
        raise DomainError(
            ErrorKind.CONFLICT,
            f"job {target.id} has not ended ({target.status}): revert it once it has"
            " (cancel it first to stop it sooner)",
        )
    live = _live_revert(session, target.id)
    if live is not None:
        raise _already_reverted(target, live)


def _live_revert(session: Session, job_id: int) -> UploadJob | None:
    """The import's revert that counts: any but a FAILED one (ux_upload_jobs_one_revert)."""
    return session.execute(
        select(UploadJob).where(UploadJob.reverts_job_id == job_id, UploadJob.status != "FAILED")
    ).scalar_one_or_none()


def _already_reverted(target: UploadJob, live: UploadJob) -> DomainError:
    state = "already reverted" if live.status == "COMPLETED" else f"being reverted ({live.status})"
    return DomainError(
        ErrorKind.CONFLICT,
        f"job {target.id} is {state} by job {live.id}",
        [FieldProblem("revertedByJobId", str(live.id))],
    )


def _label(session: Session, key_id: int) -> str | None:
    return session.execute(select(ApiKey.label).where(ApiKey.id == key_id)).scalar_one_or_none()
