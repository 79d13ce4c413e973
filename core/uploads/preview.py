"""The preview of an upload: how the service reads a file's start, and what a run would say of
its first records now, with nothing stored (DESIGN.md, POST /v1/uploads/preview).

Every judgement is the upload's own: the fields and the file's start as `judge` reads them,
the header names by core.headers' rule, the rows by the RowChecker and, for a series, by the
chunk's look-ups and checks (core.lookups.judge_rows, rolled back).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from core.codes import error_name
from core.csvstream import Record, read_records
from core.db import get_engine
from core.formats import sniff
from core.headers import Suggestion, suggest_columns
from core.lookups import judge_rows
from core.rows import (
    CouponIdentifier,
    CustomerIdentifier,
    Failure,
    Mapping,
    RowChecker,
    clean,
    mandatory_keys,
)
from core.uploads.form import (
    FileStart,
    UploadForm,
    UploadPlan,
    judge,
    parse_bool,
    parse_delimiter,
    parse_enum,
    read_start,
)
from core.uploads.sink import FileSink

# What a preview reads of the file (decompressed), and how many data records it judges.
PREVIEW_BYTES = 256 * 1024
PREVIEW_RECORDS = 5

E = TypeVar("E", CustomerIdentifier, CouponIdentifier)


def preview(
    form: UploadForm, sink: FileSink, *, org_id: int, series_id: int | None
) -> dict[str, Any]:
    """The preview's answer for a request whose file's start is in `sink` (which may hold
    more than PREVIEW_BYTES: only those are read). `series_id` is the caller's series (its
    org checked), or None: the rows then get the checks that need no series."""
    head = bytes(sink.prefix[:PREVIEW_BYTES])
    # The start of a longer file: its last record there may be cut short, so it is not judged.
    cut = sink.size > len(head) or len(head) >= PREVIEW_BYTES
    view = FileSink(sink.storage, org_id, store=False)
    view.write(head)

    delimiter = parse_delimiter(form)
    has_header = parse_bool(form, "hasHeader")
    start = read_start(form, view, delimiter)
    suggestion = suggest_columns(start.first.cells)
    given = form.get("uploadHeaders")
    named = _keys_of(given) if given else suggestion.columns.keys()
    customer = _identifier(form, "customerIdentifier", CustomerIdentifier, named)
    coupon = _identifier(form, "couponIdentifier", CouponIdentifier, named)
    required = list(mandatory_keys(customer, coupon))
    fields = {**form.fields, "customerIdentifier": customer.value, "couponIdentifier": coupon.value}

    plan: UploadPlan | None = None
    missing: list[str] = []
    if given:
        # The caller's mapping: refused as the upload refuses it.
        plan = judge(UploadForm(fields, form.file_name), view)
        has_header = plan.has_header
        columns = plan.columns
    else:
        if has_header is None:
            has_header = _looks_like_header(start, suggestion)
        columns = dict(suggestion.columns) if has_header else {}
        missing = [key for key in required if key not in columns]
        if not missing:
            fields.update(uploadHeaders=json.dumps(columns), hasHeader=str(has_header).lower())
            plan = judge(UploadForm(fields, form.file_name), view)

    if plan is not None:
        encoding, delimiter, header = plan.encoding, plan.delimiter, plan.report_header
    else:
        encoding, delimiter = start.encoding, start.delimiter
        width = len(start.first.cells)
        header = (
            [cell.strip() for cell in start.first.cells]
            if has_header
            else [f"column{i}" for i in range(width)]
        )
    records = _first_records(head, start, encoding, delimiter, has_header=has_header, cut=cut)
    verdicts: dict[int, Failure] = {}
    if plan is not None:
        verdicts = _judge(plan, records, org_id=org_id, series_id=series_id)
    unjudged = f"not judged: the mapping lacks {', '.join(missing)}" if missing else None
    return {
        "format": sniff(head).value,
        "encoding": encoding,
        "delimiter": delimiter,
        "hasHeader": has_header,
        "header": header,
        "suggestedUploadHeaders": suggestion.columns if has_header else {},
        "requiredKeys": required,
        "customerIdentifier": customer.value,
        "couponIdentifier": coupon.value,
        "couponSeriesId": series_id,
        "missingKeys": missing,
        "records": [
            _record_document(record, columns, verdicts.get(record.number), unjudged)
            for record in records
        ],
    }


def _keys_of(raw: str) -> Iterable[str]:
    """The keys an uploadHeaders names, read leniently: `judge` refuses a bad one, and says
    why, once the identifiers are known."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return ()
    return parsed.keys() if isinstance(parsed, dict) else ()


def _identifier(form: UploadForm, name: str, enum: type[E], keys: Iterable[str]) -> E:
    """The identifier sent; else the first (in the enum's order) whose key the mapping has,
    else the enum's first."""
    if form.get(name):
        found: E = parse_enum(form, name, enum)
        return found
    mapped = set(keys)
    return next((member for member in enum if member.key in mapped), next(iter(enum)))


def _looks_like_header(start: FileStart, suggestion: Suggestion) -> bool:
    """The upload's rule (the first record is a header when its redeemedDateInMillis cell is
    not an integer) where the names find that column; else a header if any cell is a known
    name."""
    date_column = suggestion.columns.get("redeemedDateInMillis")
    if date_column is None:
        return bool(suggestion.columns)
    cell = clean(start.first.cells[date_column])
    return not (cell.isascii() and cell.isdigit())


def _first_records(
    head: bytes, start: FileStart, encoding: str, delimiter: str, *, has_header: bool, cut: bool
) -> list[Record]:
    """The first data records of `head` as the worker reads them: blank lines skipped, the
    header too; at the end of a cut file, a record that may go on beyond it is left out."""
    raw = io.BytesIO(head)
    raw.seek(start.bom)
    found: list[Record] = []
    header_pending = has_header
    records = read_records(raw, encoding=encoding, delimiter=delimiter, offset=start.bom)
    for record in records:
        if cut and record.end_offset >= len(head):
            break
        if record.is_blank:
            continue
        if header_pending:
            header_pending = False
            continue
        found.append(record)
        if len(found) == PREVIEW_RECORDS:
            break
    records.close()
    return found


def _judge(
    plan: UploadPlan, records: list[Record], *, org_id: int, series_id: int | None
) -> dict[int, Failure]:
    """The failing records' failures by row number: the row checks, then (for a series) the
    look-ups and the checks a chunk makes, as things stand now."""
    mapping = Mapping(plan.columns, plan.customer, plan.coupon)
    # A job's rows may not be dated after its creation (plus a margin): a preview's is now.
    checker = RowChecker(mapping, int(time.time() * 1000), len(plan.report_header))
    items = [checker.check(r.number, r.cells, r.damage) for r in records]
    if series_id is None or not items:
        return {item.row_number: item for item in items if isinstance(item, Failure)}
    raw = get_engine().raw_connection()
    conn: Any = raw.driver_connection
    try:
        return judge_rows(
            conn,
            org_id=org_id,
            series_id=series_id,
            checker=checker,
            items=items,
        )
    finally:
        raw.close()


def _record_document(
    record: Record, columns: dict[str, int], failure: Failure | None, unjudged: str | None
) -> dict[str, Any]:
    values: dict[str, str] = {}
    if record.damage is None:
        width = len(record.cells)
        for key, index in sorted(columns.items(), key=lambda item: item[1]):
            values[key] = clean(record.cells[index]) if index < width else ""
    return {
        "rowNumber": record.number,
        "values": values,
        "errorCode": None if failure is None else int(failure.code),
        "errorName": None if failure is None else error_name(failure.code),
        "errorMessage": unjudged if failure is None else failure.message,
    }
