"""Accepting an upload: the file streamed to storage and measured, the request judged, the job made.

Everything that can be judged without reading the whole file is judged here, synchronously,
so that a bad request fails at once with a clear message instead of as a failed job.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.csvstream import (
    DELIMITERS,
    LineCounter,
    binary_reason,
    detect_delimiter,
    read_records,
    sniff_encoding,
)
from core.errors import DomainError, ErrorKind, FieldProblem, invalid
from core.headers import header_key as _header_key
from core.limits import MAX_DETAILS
from core.models import UploadJob
from core.rows import COLUMN_KEYS, CouponIdentifier, CustomerIdentifier, clean, mandatory_keys
from core.settings import get_settings
from core.storage import BlobWriter, Storage, new_key
from core.webhooks import validate_callback_url

# What the API keeps of the file's start, for sniffing it (and reading small files whole).
PREFIX_BYTES = 1 << 20


class _NoWriter:
    """Where the bytes of a file that must not be kept go: nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


class FileSink:
    """Writes the uploaded bytes to storage while counting, hashing and keeping the start.

    With `store=False` it only counts and hashes: for a request whose Idempotency-Key already
    made a job, which either is that job again or a 409, and never stores a byte."""

    def __init__(self, storage: Storage, org_id: int, *, store: bool = True) -> None:
        settings = get_settings()
        self.max_bytes = settings.max_upload_bytes
        self.max_rows = settings.max_rows
        self.storage = storage
        self.stores = store
        self.key = new_key(org_id)
        self.writer: BlobWriter = storage.writer(self.key) if store else _NoWriter()
        self.size = 0
        self.lines = LineCounter()
        self.sha256 = hashlib.sha256()
        self.prefix = bytearray()
        self.open = True

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise DomainError(
                ErrorKind.TOO_LARGE,
                f"the file is larger than the limit of {self.max_bytes} bytes",
                [FieldProblem("file", f"larger than {self.max_bytes} bytes")],
            )
        if self.lines.feed(data) > self.max_rows:
            raise DomainError(
                ErrorKind.TOO_LARGE,
                f"the file has more than the limit of {self.max_rows} lines",
                [FieldProblem("file", f"more than {self.max_rows} lines")],
            )
        self.sha256.update(data)
        if len(self.prefix) < PREFIX_BYTES:
            self.prefix += data[: PREFIX_BYTES - len(self.prefix)]
        self.writer.write(data)

    def commit(self) -> None:
        self.writer.commit()
        self.open = False

    def reread(self) -> BinaryIO:
        """The file from its start: the kept prefix when it is all of it, else from storage
        (a first record may be longer than the prefix; the file must be committed then)."""
        if self.size <= len(self.prefix):
            return io.BytesIO(bytes(self.prefix))
        if self.open:
            raise RuntimeError("commit the file before reading it back")
        return self.storage.open(self.key)

    def discard(self) -> None:
        """Throw the file away, written in part or whole."""
        if self.open:
            self.writer.abort()
            self.open = False
        elif self.stores:
            self.storage.delete(self.key)


@dataclass
class UploadForm:
    """The non-file fields of the multipart request, as sent (all text)."""

    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value.strip() if value is not None else None


@dataclass
class UploadPlan:
    customer: CustomerIdentifier
    coupon: CouponIdentifier
    columns: dict[str, int]
    delimiter: str
    has_header: bool
    encoding: str
    report_header: list[str]
    details: str | None
    dry_run: bool = False
    callback_url: str | None = None


def _parse_enum(form: UploadForm, name: str, enum: Any) -> Any:
    value = form.get(name)
    allowed = ", ".join(e.value for e in enum)
    if not value:
        raise invalid(name, f"{name} is required (one of {allowed})")
    try:
        return enum(value.upper())
    except ValueError:
        raise invalid(name, f"{name} {value!r} is not one of {allowed}") from None


def _parse_columns(raw: str | None, mandatory: tuple[str, ...]) -> dict[str, int | str]:
    """uploadHeaders: each key to a 0-based column index or to a header name."""
    if not raw:
        raise invalid(
            "uploadHeaders",
            "uploadHeaders is required: a JSON object of column indices or header names",
        )
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise invalid("uploadHeaders", "uploadHeaders is not valid JSON") from None
    if not isinstance(parsed, dict) or not parsed:
        raise invalid("uploadHeaders", "uploadHeaders must be a non-empty JSON object")
    columns: dict[str, int | str] = {}
    for key, value in parsed.items():
        if key not in COLUMN_KEYS:
            raise invalid(
                "uploadHeaders",
                f"uploadHeaders has an unknown key {key!r}; known keys: {', '.join(COLUMN_KEYS)}",
            )
        named = isinstance(value, str) and bool(_header_key(value))
        indexed = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if named or indexed:
            columns[key] = value
        else:
            raise invalid(
                "uploadHeaders",
                f"uploadHeaders[{key!r}] must be a non-negative integer index or a header name",
            )
    missing = [key for key in mandatory if key not in columns]
    if missing:
        raise invalid(
            "uploadHeaders", f"uploadHeaders lacks the mandatory key(s) {', '.join(missing)}"
        )
    return columns


def _resolve_names(columns: dict[str, int | str], header: list[str]) -> dict[str, int]:
    """Header names in uploadHeaders, as indices of the header row's columns."""
    where: dict[str, list[int]] = {}
    for index, cell in enumerate(header):
        where.setdefault(_header_key(cell), []).append(index)
    resolved: dict[str, int] = {}
    for key, value in columns.items():
        if isinstance(value, int):
            resolved[key] = value
            continue
        found = where.get(_header_key(value), [])
        if not found:
            listed = ", ".join(repr(clean(cell)) for cell in header)
            raise invalid(
                "uploadHeaders",
                f"uploadHeaders[{key!r}] names a column {value!r} that the header row lacks; "
                f"its columns: {listed}",
            )
        if len(found) > 1:
            raise invalid(
                "uploadHeaders",
                f"uploadHeaders[{key!r}] names {value!r}, which the header row has "
                f"{len(found)} times (columns {', '.join(map(str, found))}): use an index",
            )
        resolved[key] = found[0]
    return resolved


def _check_distinct(columns: dict[str, int]) -> None:
    seen: dict[int, str] = {}
    for key, index in columns.items():
        if index in seen:
            raise invalid(
                "uploadHeaders", f"uploadHeaders maps {seen[index]!r} and {key!r} to column {index}"
            )
        seen[index] = key


def _parse_bool(form: UploadForm, name: str) -> bool | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, f"{name} must be true or false, not {value!r}")


def _parse_delimiter(form: UploadForm) -> str | None:
    value = form.fields.get("delimiter")
    if value is None or value == "":
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    value = named.get(value.lower(), value)
    if value not in DELIMITERS:
        raise invalid("delimiter", "delimiter must be one of ',', ';', tab or '|'")
    return value


def judge(form: UploadForm, sink: FileSink) -> UploadPlan:
    """Everything that can be said of the request without reading the whole file."""
    customer = _parse_enum(form, "customerIdentifier", CustomerIdentifier)
    coupon = _parse_enum(form, "couponIdentifier", CouponIdentifier)
    mandatory = mandatory_keys(customer, coupon)
    requested = _parse_columns(form.get("uploadHeaders"), mandatory)
    by_name = any(isinstance(value, str) for value in requested.values())
    delimiter = _parse_delimiter(form)
    has_header = _parse_bool(form, "hasHeader")
    if by_name and has_header is False:
        raise invalid(
            "uploadHeaders",
            "uploadHeaders names header columns, but hasHeader is false: use column indices",
        )
    if by_name:
        has_header = True
    dry_run = bool(_parse_bool(form, "dryRun"))
    callback_url = form.get("callbackUrl") or None
    if callback_url is not None:
        callback_url = validate_callback_url(callback_url)
    details = form.fields.get("details", form.fields.get("Details"))
    if details is not None and len(details) > MAX_DETAILS:
        raise invalid("details", f"details is longer than {MAX_DETAILS} characters")

    if form.file_name is None:
        raise invalid("file", "file is required: the CSV, as a multipart file part")
    prefix = bytes(sink.prefix)
    if sink.size == 0:
        raise invalid("file", "the file is empty")
    reason = binary_reason(prefix)
    if reason:
        raise DomainError(ErrorKind.UNSUPPORTED_MEDIA, reason, [FieldProblem("file", reason)])
    encoding, bom = sniff_encoding(prefix)
    text = prefix[bom:].decode(encoding, "replace")
    if delimiter is None:
        delimiter = detect_delimiter(text)

    with sink.reread() as raw:
        raw.seek(bom)
        records = read_records(raw, encoding=encoding, delimiter=delimiter, offset=bom)
        non_blank = (r for r in records if not r.is_blank)
        first = next(non_blank, None)
        second = next(non_blank, None)
        records.close()  # while the file is still open
    if first is None:
        raise invalid("file", "the file has no records (only blank lines)")
    if by_name:
        columns = _resolve_names(requested, first.cells)
    else:
        columns = {key: value for key, value in requested.items() if isinstance(value, int)}
    _check_distinct(columns)
    width = len(first.cells)
    beyond = sorted((i, k) for k, i in columns.items() if i >= width)
    if beyond:
        index, key = beyond[0]
        raise invalid(
            "uploadHeaders",
            f"uploadHeaders maps {key!r} to column {index}, but the first record has only "
            f"{width} column(s) (with delimiter {delimiter!r})",
        )
    if has_header is None:
        date_cell = clean(first.cells[columns["redeemedDateInMillis"]])
        has_header = not (date_cell.isascii() and date_cell.isdigit())
    if has_header:
        if second is None:
            raise invalid("file", "the file has a header but no data record")
        report_header = [cell.strip() for cell in first.cells]
    else:
        names = {index: key for key, index in columns.items()}
        report_header = [names.get(i, f"column{i}") for i in range(width)]
    return UploadPlan(
        customer=customer,
        coupon=coupon,
        columns=columns,
        delimiter=delimiter,
        has_header=has_header,
        encoding=encoding,
        report_header=report_header,
        details=details,
        dry_run=dry_run,
        callback_url=callback_url,
    )


def fingerprint(org_id: int, series_id: int, form: UploadForm, sha256: str) -> str:
    """What makes two requests "the same" for Idempotency-Key, whatever the multipart boundary:
    org, series, form fields and the file's SHA-256 (DESIGN.md), not the file's name, so a
    client that retries with the same bytes under another temporary name gets its job back."""
    payload = json.dumps(
        {
            "org": org_id,
            "series": series_id,
            "fields": sorted(form.fields.items()),
            "sha256": sha256,
        }
    )
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
) -> UploadJob:
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
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        file_name=file_name,
        file_size=sink.size,
        file_sha256=sink.sha256.hexdigest(),
        storage_key=sink.key,
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
