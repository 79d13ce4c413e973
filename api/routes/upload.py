"""Capillary-compatible upload and status endpoints."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.deps import OrgTx, UploadOrgId
from api.errors import ERROR_RESPONSES, UPLOAD_RESPONSES
from core import jobs, metrics, reference, uploads
from core.db import transaction
from core.errors import DomainError, ErrorKind, FieldProblem, invalid
from core.models import UploadJob
from core.reference import MAX_ID
from core.settings import get_settings
from core.storage import get_storage
from worker.tasks import enqueue_job

log = logging.getLogger(__name__)
router = APIRouter(prefix="/coupon/api/v1/upload", tags=["capillary"])

# Capillary's name for it; a BIGINT, so anything larger names nothing.
SeriesId = Annotated[int, Path(alias="couponSeriesId", gt=0, le=MAX_ID)]

# The body is read as a stream (never buffered by the framework), so it is described here.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["customerIdentifier", "couponIdentifier", "uploadHeaders", "file"],
                    "properties": {
                        "customerIdentifier": {
                            "type": "string",
                            "enum": ["MOBILE", "EXTERNAL_ID", "EMAIL", "USER_ID"],
                        },
                        "couponIdentifier": {
                            "type": "string",
                            "enum": ["COUPON_ID", "COUPON_CODE"],
                        },
                        "uploadHeaders": {
                            "type": "string",
                            "description": "JSON object: column key -> 0-based column index"
                            " or a name of the header row (case and spaces ignored)",
                        },
                        "file": {"type": "string", "format": "binary"},
                        "details": {"type": "string", "maxLength": 1000},
                        "delimiter": {"type": "string"},
                        "hasHeader": {"type": "string", "enum": ["true", "false"]},
                        "dryRun": {"type": "string", "enum": ["true", "false"]},
                        "callbackUrl": {
                            "type": "string",
                            "maxLength": 2000,
                            "description": "http(s) URL that gets the signed job document"
                            " when the job ends",
                        },
                    },
                }
            }
        },
    }
}

MAX_FILE_NAME = 255
PARSE_BLOCK = 1 << 20


def _result(
    org_id: int, series_id: int, file_name: str, job_list: list[UploadJob]
) -> dict[str, Any]:
    return {
        "orgId": org_id,
        "couponSeriesId": series_id,
        "fileName": file_name,
        "redeemUploadJobStatuses": [jobs.capillary_status(job) for job in job_list],
    }


class _MultipartReader:
    """Streams one multipart body: the file part into a FileSink, the other fields into memory."""

    def __init__(self, sink: uploads.FileSink) -> None:
        settings = get_settings()
        self.max_parts = settings.max_multipart_parts
        self.max_field_bytes = settings.max_field_bytes
        self.sink = sink
        self.form = uploads.UploadForm()
        self.parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field: str | None = None
        self._is_file = False
        self._buffer = bytearray()

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise invalid("request", f"too many multipart parts (at most {self.max_parts})")
        self._disposition = b""
        self._field = None
        self._is_file = False
        self._buffer = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise invalid("request", "a multipart part has no name")
        self._field = name.decode("utf-8", "replace")
        if b"filename" in options:
            if self._field != "file":
                raise invalid(
                    self._field, f"unexpected file part {self._field!r}: send it as 'file'"
                )
            if self.form.file_name is not None:
                raise invalid("file", "only one file per request")
            raw_name = options[b"filename"].decode("utf-8", "replace")
            # Kept as data only (it never reaches a path): strip what a database can't hold.
            self.form.file_name = raw_name.replace("\x00", "")[:MAX_FILE_NAME] or "upload.csv"
            self._is_file = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.sink.write(data[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > self.max_field_bytes:
            raise invalid(
                self._field or "request", f"field larger than {self.max_field_bytes} bytes"
            )

    def _part_end(self) -> None:
        if not self._is_file and self._field is not None:
            if self._field in self.form.fields:
                raise invalid(self._field, f"{self._field} is given more than once")
            self.form.fields[self._field] = self._buffer.decode("utf-8", "replace")


def _boundary(request: Request) -> bytes:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise invalid("file", "the request must be multipart/form-data with a file part")
    return params[b"boundary"]


@router.post(
    "/redeemFile/{couponSeriesId}",
    status_code=202,
    openapi_extra=UPLOAD_BODY,
    responses=UPLOAD_RESPONSES,
)
async def upload_redeemed_coupons(
    series_id: SeriesId, request: Request, org_id: UploadOrgId
) -> JSONResponse:
    """Upload a CSV of redeemed coupons; answers at once with the job, which runs later."""

    def check_series() -> None:
        with transaction(org_id) as session:
            reference.get_series(session, org_id, series_id)

    await run_in_threadpool(check_series)
    boundary = _boundary(request)

    storage = get_storage()
    sink = uploads.FileSink(storage, org_id)
    reader = _MultipartReader(sink)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        if storage.writes_block:
            # Parsing writes to storage, and an S3 part upload waits on the network: from the
            # threadpool, a MiB at a time, so the event loop keeps answering polls meanwhile.
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= PARSE_BLOCK:
                    await run_in_threadpool(parser.write, bytes(pending))
                    pending.clear()
            if pending:
                await run_in_threadpool(parser.write, bytes(pending))
        else:
            # Local files: inline (a third faster than through the threadpool: 213 against
            # 142 MiB/s for a 1 GiB upload on the bench).
            async for chunk in request.stream():
                parser.write(chunk)
        await run_in_threadpool(parser.finalize)
        await run_in_threadpool(sink.commit)
        # In the threadpool too: judging may resolve the callbackUrl's host.
        plan = await run_in_threadpool(uploads.judge, reader.form, sink)
    except MultipartParseError as exc:
        sink.discard()
        raise invalid("request", f"the multipart body is malformed: {exc}") from None
    except BaseException:
        sink.discard()
        raise

    form = reader.form
    file_name = form.file_name or "upload.csv"
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        get_storage().delete(sink.key)
        raise DomainError(
            ErrorKind.INVALID,
            "Idempotency-Key must be 1 to 255 characters",
            [FieldProblem("Idempotency-Key", "1 to 255 characters")],
        )
    fp = uploads.fingerprint(org_id, series_id, form, sink.sha256.hexdigest()) if key else None

    def persist() -> tuple[UploadJob, bool]:
        with transaction(org_id) as session:
            if key is not None and fp is not None:
                earlier = uploads.existing_for_key(session, org_id, key, fp)
                if earlier is not None:
                    return earlier, False
            job = uploads.create_job(
                session,
                org_id=org_id,
                series_id=series_id,
                plan=plan,
                sink=sink,
                file_name=file_name,
                idempotency_key=key,
                request_fingerprint=fp,
            )
            return job, job.storage_key == sink.key

    try:
        job, created = await run_in_threadpool(persist)
    except BaseException:
        get_storage().delete(sink.key)
        raise
    if created:
        metrics.upload_stored(sink.size)
        # After the commit, never before: a worker must find the job it is told about.
        try:
            await run_in_threadpool(enqueue_job, job.id)
        except Exception:
            log.warning("job %s: could not enqueue; the sweeper will", job.id, exc_info=True)
    else:
        get_storage().delete(sink.key)
    body = {
        "success": True,
        "status": {"success": True, "code": 200, "message": "Upload queued"},
        "result": _result(org_id, series_id, job.file_name, [job]),
    }
    return JSONResponse(body, status_code=202)


@router.get("/getUploadRedeemedCouponStatus/{couponSeriesId}", responses=ERROR_RESPONSES)
def upload_statuses(series_id: SeriesId, tx: OrgTx) -> dict[str, Any]:
    """Every upload job of the series, newest first."""
    reference.get_series(tx.session, tx.org_id, series_id)
    rows = (
        tx.session.query(UploadJob)
        .filter(UploadJob.org_id == tx.org_id, UploadJob.series_id == series_id)
        .order_by(UploadJob.id.desc())
        .all()
    )
    return {
        "success": True,
        "status": {"success": True, "code": 200, "message": "Success"},
        "result": _result(tx.org_id, series_id, rows[0].file_name if rows else "", rows),
    }
