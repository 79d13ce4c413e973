"""Judging an upload request: its fields and the file's first record, before any job exists."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from core.csvstream import (
    DELIMITERS,
    Record,
    binary_reason,
    detect_delimiter,
    read_records,
    sniff_encoding,
)
from core.errors import DomainError, ErrorKind, FieldProblem, invalid
from core.headers import header_key as _header_key
from core.limits import MAX_DETAILS
from core.rows import COLUMN_KEYS, CouponIdentifier, CustomerIdentifier, clean, mandatory_keys
from core.uploads.sink import FileSink
from core.webhooks.urls import validate_callback_url


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
    max_error_rate: float | None = None  # as the form gave it; create_job falls back on the org's


def parse_enum(form: UploadForm, name: str, enum: Any) -> Any:
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


def parse_bool(form: UploadForm, name: str) -> bool | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise invalid(name, f"{name} must be true or false, not {value!r}")


def parse_delimiter(form: UploadForm) -> str | None:
    value = form.fields.get("delimiter")
    if value is None or value == "":
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    value = named.get(value.lower(), value)
    if value not in DELIMITERS:
        raise invalid("delimiter", "delimiter must be one of ',', ';', tab or '|'")
    return value


def parse_rate(value: str, name: str = "maxErrorRate") -> float:
    """A share from 0 to 1 (`0.05`) or a percentage with its sign (`5%`), as a share.

    A bare `5` is refused, not read as 5%: it could as well mean a share of 5, which no rate
    can be, and a guard read wrongly would let a wrong upload through or stop a good one."""
    text = value.strip()
    percent = text.endswith("%")
    digits = text[:-1].strip() if percent else text
    try:
        number = float(digits)
    except ValueError:
        number = math.nan
    rate = number / 100 if percent else number
    if not (math.isfinite(rate) and 0 <= rate <= 1):
        raise invalid(
            name,
            f"{name} must be a share from 0 to 1 (0.05) or a percentage from 0% to 100% "
            f"(5%), not {value!r}",
        )
    return rate


def parse_max_error_rate(form: UploadForm) -> float | None:
    """maxErrorRate (DESIGN.md, Guards): absent or empty, None (the org's default applies)."""
    value = form.get("maxErrorRate")
    return None if value is None or value == "" else parse_rate(value)


@dataclass
class FileStart:
    """What the start of a file says, read as the worker will read it."""

    encoding: str
    bom: int  # bytes of the byte-order mark, where the records start
    delimiter: str
    first: Record  # the first non-blank record
    second: Record | None  # the next non-blank one


def read_start(form: UploadForm, sink: FileSink, delimiter: str | None) -> FileStart:
    """The file's first two non-blank records, its encoding and its delimiter (`delimiter`,
    else detected); a missing, empty or unreadable file, or one of blank lines, is refused."""
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
    return FileStart(encoding, bom, delimiter, first, second)


def judge(form: UploadForm, sink: FileSink) -> UploadPlan:
    """Everything that can be said of the request without reading the whole file."""
    customer = parse_enum(form, "customerIdentifier", CustomerIdentifier)
    coupon = parse_enum(form, "couponIdentifier", CouponIdentifier)
    mandatory = mandatory_keys(customer, coupon)
    requested = _parse_columns(form.get("uploadHeaders"), mandatory)
    by_name = any(isinstance(value, str) for value in requested.values())
    delimiter = parse_delimiter(form)
    has_header = parse_bool(form, "hasHeader")
    if by_name and has_header is False:
        raise invalid(
            "uploadHeaders",
            "uploadHeaders names header columns, but hasHeader is false: use column indices",
        )
    if by_name:
        has_header = True
    dry_run = bool(parse_bool(form, "dryRun"))
    max_error_rate = parse_max_error_rate(form)
    callback_url = form.get("callbackUrl") or None
    if callback_url is not None:
        callback_url = validate_callback_url(callback_url)
    details = form.fields.get("details", form.fields.get("Details"))
    if details is not None and len(details) > MAX_DETAILS:
        raise invalid("details", f"details is longer than {MAX_DETAILS} characters")

    start = read_start(form, sink, delimiter)
    first, second, delimiter, encoding = start.first, start.second, start.delimiter, start.encoding
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
        max_error_rate=max_error_rate,
    )
