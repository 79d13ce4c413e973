"""Making the job of an upload, once: an Idempotency-Key gives every retry the same job."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import DomainError, ErrorKind, FieldProblem
from core.models import Org, UploadJob
from core.uploads.form import UploadForm, UploadPlan, parse_max_error_rate
from core.uploads.sink import FileSink


def fingerprint(org_id: int, series_id: int, form: UploadForm, sha256: str) -> str:
    """What makes two requests "the same" for Idempotency-Key, whatever the multipart boundary:
    org, series, form fields and the file's SHA-256 (DESIGN.md), not the file's name, so a
    client that retries with the same bytes under another temporary name gets its job back.

    maxErrorRate counts as the rate it says (`5%` and `0.05` are the same request); the org's
    default does not count: a retry is the same request even if the default changed since, and
    gets the job with the rate it was made with."""
    fields = {name: value for name, value in form.fields.items() if name != "maxErrorRate"}
    content: dict[str, object] = {
        "org": org_id,
        "series": series_id,
        "fields": sorted(fields.items()),
        "sha256": sha256,
    }
    if "maxErrorRate" in form.fields:
        # Only then: a request without it keeps the fingerprint it had before the field existed.
        content["maxErrorRate"] = parse_max_error_rate(form)
    payload = json.dumps(content)
    return hashlib.sha256(payload.encode()).hexdigest()


def existing_for_key(session: Session, org_id: int, key: str, fp: str) -> UploadJob | None:
    """The job an earlier request with this Idempotency-Key made; 409 if it was different."""
    job = job_for_key(session, org_id, key)
    if job is not None and job.request_fingerprint != fp:
        raise key_conflict()
    return job


def job_for_key(session: Session, org_id: int, key: str) -> UploadJob | None:
    """The job an earlier request with this Idempotency-Key made, whatever it was."""
    return session.execute(
        select(UploadJob).where(UploadJob.org_id == org_id, UploadJob.idempotency_key == key)
    ).scalar_one_or_none()


def key_conflict() -> DomainError:
    return DomainError(
        ErrorKind.CONFLICT,
        "this Idempotency-Key was used for a different request",
        [FieldProblem("Idempotency-Key", "used before with another request")],
    )


def max_error_rate(session: Session, org_id: int, plan: UploadPlan) -> float | None:
    """The upload's maxErrorRate, else the org's defaultMaxErrorRate, else none (no guard)."""
    if plan.max_error_rate is not None:
        return plan.max_error_rate
    default = session.execute(
        select(Org.default_max_error_rate).where(Org.id == org_id)
    ).scalar_one_or_none()
    return None if default is None else float(default)


def create_job(
    session: Session,
    *,
    org_id: int,
    series_id: int,
    plan: UploadPlan,
    sink: FileSink,
    file_name: str,
    idempotency_key: str | None,
    request_fingerprint: str | None,
    key_id: int | None = None,
    key_label: str | None = None,
) -> UploadJob:
    """The job of a stored upload, QUEUED; with the key that made it (its label as it is now)."""
    job = UploadJob(
        org_id=org_id,
        series_id=series_id,
        status="QUEUED",
        customer_identifier=plan.customer.value,
        coupon_identifier=plan.coupon.value,
        upload_headers=plan.columns,
        delimiter=plan.delimiter,
        has_header=plan.has_header,
        encoding=plan.encoding,
        report_header=plan.report_header,
        details=plan.details,
        dry_run=plan.dry_run,
        callback_url=plan.callback_url,
        max_error_rate=max_error_rate(session, org_id, plan),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        file_name=file_name,
        file_size=sink.size,
        file_sha256=sink.sha256.hexdigest(),
        storage_key=sink.key,
        kind="IMPORT",
        uploaded_by_key_id=key_id,
        uploaded_by_label=key_label,
    )
    try:
        # The savepoint first, then the insert: added before it, the job would be flushed by
        # begin_nested() itself, outside the savepoint, and a concurrent request's unique
        # violation would abort the whole transaction instead of only the savepoint.
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        if idempotency_key is None:
            raise
        existing = existing_for_key(session, org_id, idempotency_key, request_fingerprint or "")
        if existing is None:
            raise
        return existing
    session.refresh(job)
    return job
