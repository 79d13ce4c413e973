"""The errors CSV: the uploaded header, then each failed row's cells and why it failed.

Cells that a spreadsheet would run as a formula get a leading `'`; the upload parser drops
it again, so a fixed report uploads as it is.

Once retention has purged the job's file, its rows' cells are gone too (core/retention.py):
each row then has empty cells and its errorMessage says so, so that nobody takes an empty
cell for an empty value of the upload.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime

from core.codes import error_name
from core.db import transaction
from core.jobs import queries

PAGE_ROWS = 5_000
REPORT_COLUMNS = ("rowNumber", "errorCode", "errorName", "errorMessage")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def purged_note(purged_at: datetime) -> str:
    """What a row error says of its cells once they went with the file."""
    return f"(the row's cells were deleted with the uploaded file on {purged_at:%Y-%m-%d})"


def report_lines(
    org_id: int, job_id: int, header: list[str], cells_purged_at: datetime | None = None
) -> Iterator[bytes]:
    """The report, a page of rows at a time, each page read in a short transaction of its own.
    `cells_purged_at`: when retention purged the job's file (and with it the cells)."""
    note = None if cells_purged_at is None else purged_note(cells_purged_at)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    width = len(header)
    writer.writerow([escape(c) for c in [*header, *REPORT_COLUMNS]])
    after = 0
    while True:
        with transaction(org_id) as session:
            page = queries.row_errors(session, job_id, after_row=after, limit=PAGE_ROWS)
        for error in page:
            cells = [] if note else list(error.cells[:width])
            cells.extend([""] * (width - len(cells)))
            message = f"{error.message} {note}" if note else error.message
            cells.extend([str(error.row_number), str(error.code), error_name(error.code), message])
            writer.writerow([escape(c) for c in cells])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        if len(page) < PAGE_ROWS:
            return
        after = page[-1].row_number
