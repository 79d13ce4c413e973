"""uploadHeaders: as given with --headers, or mapped from the file's header row by core's rule."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cli.client.files import read_header_row
from cli.client.http import ClientError
from core.headers import suggest_columns
from core.rows import CouponIdentifier, CustomerIdentifier, mandatory_keys

_HINT = "pass --headers '{\"<key>\": <column index or header name>, ...}'"


@dataclass(frozen=True)
class UploadHeaders:
    """What to send as uploadHeaders, and the header names it was mapped from, if it was."""

    text: str
    by_name: dict[str, str] | None = None

    @property
    def columns(self) -> dict[str, int | str]:
        """Each key and its column: a 0-based index or a header name."""
        parsed: dict[str, int | str] = json.loads(self.text)
        return parsed


def map_header_by_name(
    header: Sequence[str], customer: CustomerIdentifier, coupon: CouponIdentifier
) -> dict[str, str]:
    """uploadHeaders naming columns by their header names, or a ClientError saying why not."""
    columns = ", ".join(repr(cell) for cell in header) or "nothing"
    suggestion = suggest_columns(header)
    if suggestion.clashes:
        key, (first, second, *_) = next(iter(suggestion.clashes.items()))
        raise ClientError(
            f"two columns could be {key}: {header[first]!r} and {header[second]!r}; {_HINT}"
        )
    if not suggestion.columns:
        raise ClientError(
            f"the file's first line is not a header row the CLI can map by name "
            f"(it reads {columns}); {_HINT}"
        )
    missing = [key for key in mandatory_keys(customer, coupon) if key not in suggestion.columns]
    if missing:
        raise ClientError(
            f"no column of the header row maps to {', '.join(missing)} "
            f"(the header has {columns}); {_HINT}"
        )
    # In the header's order, as the user reads the file.
    ordered = sorted(suggestion.columns.items(), key=lambda item: item[1])
    return {key: header[index] for key, index in ordered}


def resolve_upload_headers(
    file: Path, headers: str | None, customer: CustomerIdentifier, coupon: CouponIdentifier
) -> UploadHeaders:
    """--headers as given (or read from @FILE), else the file's header row mapped by name."""
    if headers is None:
        mapping = map_header_by_name(read_header_row(file), customer, coupon)
        return UploadHeaders(json.dumps(mapping), mapping)
    if headers.startswith("@"):
        try:
            headers = Path(headers[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ClientError(f"cannot read {headers[1:]}: {exc.strerror or exc}") from None
    try:
        parsed = json.loads(headers)
    except ValueError as exc:
        raise ClientError(f"--headers is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ClientError("--headers must be a JSON object: column key -> index or header name")
    return UploadHeaders(headers)
