"""The file to upload, as the CLI reads it before sending: what it is, and its header row."""

from __future__ import annotations

from pathlib import Path

from cli.client.http import ClientError
from core.csvstream import detect_delimiter, read_records, sniff_encoding
from core.formats import refusal, sniff_path

HEADER_SAMPLE_BYTES = 64 * 1024


def check_readable(path: Path) -> None:
    """A ClientError, before anything is sent, when the service would refuse the file's format.

    The same rule as the API's 415 (core/formats.py), told with the file's own name.
    """
    if not path.is_file():
        raise ClientError(f"{path}: no such file")
    try:
        found = sniff_path(path)
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
    reason = refusal(found, subject=str(path))
    if reason is not None:
        raise ClientError(reason)


def read_header_row(path: Path) -> list[str]:
    """The file's first record (its header, if it has one), read as the service reads it:
    the same encoding sniffing, delimiter detection and CSV rules (core/csvstream.py)."""
    try:
        with path.open("rb") as handle:
            encoding, bom = sniff_encoding(handle.read(4))
            handle.seek(bom)
            sample = handle.read(HEADER_SAMPLE_BYTES).decode(encoding, "replace")
            handle.seek(bom)
            records = read_records(
                handle, encoding=encoding, delimiter=detect_delimiter(sample), offset=bom
            )
            try:
                first = next((r for r in records if not r.is_blank), None)
            finally:
                records.close()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [] if first is None else [cell.strip() for cell in first.cells]
