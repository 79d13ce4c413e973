"""The errors CSV: the uploaded header, then each failed row's cells and why it failed.

Cells that a spreadsheet would run as a formula get a leading `'`; the upload parser drops
it again, so a fixed report uploads as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from core.codes import error_name
from core.db import transaction
from core.jobs import queries

PAGE_ROWS = 5_000
REPORT_COLUMNS = ("rowNumber", "errorCode", "errorName", "errorMessage")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def report_lines(org_id: int, job_id: int, header: list[str]) -> Iterator[bytes]:
    """The report, a page of rows at a time, each page read in a short transaction of its own."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    width = len(header)
    writer.writerow([escape(c) for c in [*header, *REPORT_COLUMNS]])
    after = 0
    while True:
        with transaction(org_id) as session:
            page = queries.row_errors(session, job_id, after_row=after, limit=PAGE_ROWS)
        for error in page:
            cells = list(error.cells[:width])
            cells.extend([""] * (width - len(cells)))
            cells.extend(
                [str(error.row_number), str(error.code), error_name(error.code), error.message]
            )
            writer.writerow([escape(c) for c in cells])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        if len(page) < PAGE_ROWS:
            return
        after = page[-1].row_number
