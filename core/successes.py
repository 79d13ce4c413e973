"""The successes report: every row a job applied, in file order, with the redemption it made.

The CSV gives each applied row's cells as uploaded, re-read from the stored file in one pass
and merged by row number with the job's redemptions, a page at a time: neither the file nor
the job's rows are ever held whole. Rows a revert removed are read from its archive
(`reverted_redemptions`) and still listed, marked with the revert's id. A REVERT job's own
successes are the redemptions it removed, with the cells of the import's file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from core.csvstream import read_records, sniff_encoding
from core.db import transaction
from core.jobs import queries
from core.models import UploadJob
from core.reports import escape
from core.storage import BlobMissing, get_storage

# Rows read in one short transaction of the CSV's. Larger than the errors report's: a job's
# successes are most of its rows, and every page is a round trip.
PAGE_ROWS = 10_000
# Record numbers one statement looks at. A job's redemptions are read right after its last
# chunk, before autovacuum has analysed them: the planner then expects a few hundred rows and
# sorts every row past the cursor (a bitmap scan) instead of walking the index, and a 1,000,000
# row CSV read 50 times what it wrote. In a window no plan reads more than this.
WINDOW = 10_000
REPORT_COLUMNS = ("rowNumber", "redemptionId", "couponId", "userId", "revertedByJobId")

# What the JSON page shows of each row, and what the CSV needs: its ids, as text already
# (Postgres formats them faster than a str() a cell, and the CSV reads no other column).
_DOCUMENT_COLUMNS = (
    "row_number, id, coupon_id, customer_id, {reverted} AS reverted_by_job_id,"
    " redeemed_ms, till_id, bill_id, bill_number, details"
)
_CSV_COLUMNS = (
    "row_number, id::text, coupon_id::text, customer_id::text,"
    " coalesce({reverted}::text, '') AS reverted_by_job_id"
)


def _statements(columns: str) -> tuple[TextClause, TextClause]:
    """The page of an import's rows and of what one revert removed, with these columns."""
    # Each branch walks an index on (job_id, row_number) and stops after `limit` rows; the
    # outer ORDER BY merges the two. A row is in one table or the other: the revert that
    # archives a redemption deletes it in the same transaction.
    of_import = text(
        f"(SELECT {columns.format(reverted='NULL::bigint')} FROM redemptions"
        " WHERE job_id = :job AND row_number > :after"
        " AND row_number <= :upto ORDER BY row_number LIMIT :limit)"
        " UNION ALL"
        f" (SELECT {columns.format(reverted='reverted_by_job_id')} FROM reverted_redemptions"
        " WHERE job_id = :job AND row_number > :after"
        " AND row_number <= :upto ORDER BY row_number LIMIT :limit)"
        " ORDER BY row_number LIMIT :limit"
    )
    # What one revert removed: the import's archived rows that carry its id (an earlier
    # revert that failed part-way keeps its own id on what it archived).
    of_revert = text(
        f"SELECT {columns.format(reverted='reverted_by_job_id')} FROM reverted_redemptions"
        " WHERE job_id = :job AND row_number > :after AND row_number <= :upto"
        " AND reverted_by_job_id = :revert"
        " ORDER BY row_number LIMIT :limit"
    )
    return of_import, of_revert


_DOCUMENT_PAGES = _statements(_DOCUMENT_COLUMNS)
_CSV_PAGES = _statements(_CSV_COLUMNS)
_Row = Any  # a Row: a tuple of the statement's columns


@dataclass(frozen=True, slots=True)
class Applied:
    """One applied row: the redemption it made (or made, and a revert removed)."""

    row_number: int
    redemption_id: int
    coupon_id: int
    user_id: int
    reverted_by_job_id: int | None
    redeemed_ms: int
    till_id: str
    bill_id: str
    bill_number: str
    details: str | None

    def document(self) -> dict[str, Any]:
        """The row as the JSON page shows it: the ids and what the redemption recorded."""
        return {
            "rowNumber": self.row_number,
            "redemptionId": self.redemption_id,
            "couponId": self.coupon_id,
            "userId": self.user_id,
            "revertedByJobId": self.reverted_by_job_id,
            "redeemedDateInMillis": self.redeemed_ms,
            "tillId": self.till_id,
            "billId": self.bill_id,
            "billNumber": self.bill_number,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class Source:
    """Where a job's successes come from: the import whose rows and file they are."""

    import_id: int
    revert_id: int | None  # a REVERT job: only what it removed
    storage_key: str | None  # None: the file is purged, and its cells with it
    encoding: str
    delimiter: str
    header: list[str]
    last_row: int  # the last record the import has processed: no redemption lies beyond


def source_of(session: Session, org_id: int, job: UploadJob) -> Source:
    """The import a job's successes read (the job itself, or the one a revert undoes)."""
    revert_id: int | None = None
    if job.kind == "REVERT" and job.reverts_job_id is not None:
        revert_id = job.id
        job = queries.get_job(session, org_id, job.reverts_job_id)
    return Source(
        import_id=job.id,
        revert_id=revert_id,
        storage_key=None if job.file_deleted_at is not None else job.storage_key,
        encoding=job.encoding,
        delimiter=job.delimiter,
        header=list(job.report_header),
        last_row=job.next_record - 1,
    )


def page(
    session: Session, source: Source, *, after_row: int, limit: int
) -> list[tuple[list[str], Applied]]:
    """The applied rows after `after_row`, in file order, at most `limit` of them, each with
    its record's cells as uploaded (none once the file is purged).

    The cells come from the stored file, read from its start up to the page's last row and
    no further: a page near a large file's end reads most of it (the CSV, which reads the
    file once for every row, is the way to take them all).
    """
    rows = _rows(session, source, _DOCUMENT_PAGES, after_row=after_row, limit=limit)
    return [(cells, Applied(*row)) for cells, row in _with_cells(source, iter(rows))]


def _rows(
    session: Session,
    source: Source,
    statements: tuple[TextClause, TextClause],
    *,
    after_row: int,
    limit: int,
) -> Sequence[_Row]:
    of_import, of_revert = statements
    statement = of_import if source.revert_id is None else of_revert
    rows: list[_Row] = []
    low = after_row
    while len(rows) < limit and low < source.last_row:
        high = min(low + WINDOW, source.last_row)
        params = {
            "job": source.import_id,
            "revert": source.revert_id,
            "after": low,
            "upto": high,
            "limit": limit - len(rows),
        }
        # Fetched whole (a page is bounded): row by row, the fetches cost the CSV a second
        # a million rows.
        rows.extend(session.execute(statement, params).all())
        low = high
    return rows


def _applied(org_id: int, source: Source) -> Iterator[_Row]:
    """Every applied row, its ids as text, each page read in a short transaction of its own."""
    after = 0
    while True:
        with transaction(org_id) as session:
            rows = _rows(session, source, _CSV_PAGES, after_row=after, limit=PAGE_ROWS)
        yield from rows
        if len(rows) < PAGE_ROWS:
            return
        after = rows[-1][0]


def _with_cells(source: Source, applied: Iterator[_Row]) -> Iterator[tuple[list[str], _Row]]:
    """Each applied row with its record's cells, the file read once, as the worker reads it.

    Once the file is purged (or its blob is gone) the cells are too: each row comes with none.
    """
    want = next(applied, None)
    if want is None:
        return
    if source.storage_key is not None:
        try:
            stream = get_storage().open(source.storage_key)
        except BlobMissing:
            stream = None
        if stream is not None:
            with stream:
                _, offset = sniff_encoding(stream.read(4))
                stream.seek(offset)
                records = read_records(
                    stream, encoding=source.encoding, delimiter=source.delimiter, offset=offset
                )
                for record in records:
                    # Redemptions name data records only, so the header and blank lines,
                    # whose numbers none has, fall through without a rule of their own.
                    while want is not None and want[0] < record.number:
                        yield [], want  # a row the file no longer has: never expected
                        want = next(applied, None)
                    if want is None:
                        return  # the rest of the file applied nothing: no need to read it
                    if want[0] == record.number:
                        yield record.cells, want
                        want = next(applied, None)
    while want is not None:
        yield [], want
        want = next(applied, None)


def report_lines(org_id: int, source: Source) -> Iterator[bytes]:
    """The successes CSV: the errors CSV's dialect, its header, then the redemption's ids."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    width = len(source.header)
    writer.writerow([escape(c) for c in [*source.header, *REPORT_COLUMNS]])
    pending = 0
    padding = [""] * width
    for cells, row in _with_cells(source, _applied(org_id, source)):
        out = list(map(escape, cells[:width]))
        if len(out) < width:
            out.extend(padding[len(out) :])
        # Ids are digits: nothing a spreadsheet would run, so no escape to look for.
        out.append(str(row[0]))
        out.extend(row[1:])
        writer.writerow(out)
        pending += 1
        if pending >= PAGE_ROWS:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue().encode("utf-8")
