"""What the CLI prints: one-line errors, jobs and series as tables, and a job's live progress.

Everything fits 80 columns (rich reads COLUMNS): a cell that cannot fit wraps, never ends in
`…`; times are the local clock, short in lists; `--json` prints the service's full document.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.client.documents import Job, Preview
from cli.client.http import ClientError
from core.guard import percent


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(document: Mapping[str, Any]) -> None:
    typer.echo(json.dumps(document, indent=2))


def show(document: Mapping[str, Any], as_json: bool, *views: RenderableType) -> None:
    """The service's document in full with `--json`, else the views made of it."""
    if as_json:
        print_json(document)
        return
    console = stdout()
    for view in views:
        console.print(view)


def fail(error: ClientError) -> NoReturn:
    typer.secho(f"bulkredeem: {error.message}", err=True, fg=typer.colors.RED)
    for line in error.details:
        typer.secho(f"  {line}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


@contextmanager
def reported() -> Iterator[None]:
    """A ClientError becomes one clear message and exit status 1, never a traceback."""
    try:
        yield
    except ClientError as error:
        fail(error)


# --- values -------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate(rows_per_second: float | None) -> str:
    return "-" if rows_per_second is None else f"{rows_per_second:,.0f}"


def _local(iso: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    # The service writes UTC with its offset; a bare time would be taken as local by astimezone.
    return moment.astimezone() if moment.tzinfo is not None else None


def short_time(iso: str | None, now: datetime | None = None) -> str:
    """A time for a list: `21:13:05` today, `12-04 21:13` this year, `2025-12-04` before."""
    if not iso:
        return "-"
    moment = _local(iso)
    if moment is None:
        return iso
    today = (now or datetime.now().astimezone()).astimezone(moment.tzinfo)
    if moment.date() == today.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == today.year:
        return moment.strftime("%m-%d %H:%M")
    return moment.strftime("%Y-%m-%d")


def full_time(iso: str | None) -> str:
    """A time in full, on the local clock with its zone: `2026-12-04 21:13:05 UTC`."""
    if not iso:
        return "-"
    moment = _local(iso)
    return iso if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


def cell(value: object) -> Text:
    # Text, not a str: a file name or message with [brackets] is not rich markup.
    return Text("-" if value is None or value == "" else str(value))


# --- tables -------------------------------------------------------------------------------------


def _list_table(title: str | None = None) -> Table:
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )


def _details_table() -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


_JOB_COLUMNS = ("job", "series", "status", "rows", "failed", "created")
_RIGHT = frozenset({"job", "series", "rows", "failed"})
_GAP = "  "


def jobs_lines(jobs: list[Job], width: int, now: datetime | None = None) -> list[str]:
    """The jobs list, one line a job with its file name last when that fits `width` columns;
    else each file name on the line below its job (wrapped if it must), so nothing is cut."""
    rows = [
        (
            str(job.job_id),
            str(job.series_id),
            job.status,
            f"{job.progress.rows_processed:,}",
            f"{job.progress.rows_failed:,}",
            short_time(job.created_at, now),
        )
        for job in jobs
    ]
    files = [(job.file_name or "-") + (" (dry run)" if job.dry_run else "") for job in jobs]
    widths = [
        max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(_JOB_COLUMNS)
    ]

    def line(cells: tuple[str, ...]) -> str:
        return _GAP.join(
            cell.rjust(w) if name in _RIGHT else cell.ljust(w)
            for cell, w, name in zip(cells, widths, _JOB_COLUMNS, strict=True)
        )

    fixed = sum(widths) + len(_GAP) * (len(widths) - 1)
    if fixed + len(_GAP) + max([len("file"), *map(len, files)]) <= width:
        lines = [line(_JOB_COLUMNS) + _GAP + "file"]
        lines += [line(row) + _GAP + name for row, name in zip(rows, files, strict=True)]
        return [text.rstrip() for text in lines]
    # Under the series column: the id alone to its left says whose file it is.
    indent = " " * (widths[0] + len(_GAP))
    room = max(width - len(indent), 20)
    lines = [line(_JOB_COLUMNS).rstrip(), indent + "file"]
    for row, name in zip(rows, files, strict=True):
        lines.append(line(row).rstrip())
        lines += [indent + name[at : at + room] for at in range(0, len(name), room)]
    return lines


def job_table(job: Job) -> Table:
    p = job.progress
    table = _details_table()
    for label, value in (
        ("job", job.job_id),
        ("series", job.series_id),
        ("status", job.status),
        ("dry run", "yes" if job.dry_run else "no"),
        ("file", job.file_name),
        ("created", full_time(job.created_at)),
        ("finished", full_time(job.finished_at) if job.finished_at else None),
        ("progress", f"{p.percent:.1f}%"),
        (
            "rows",
            f"{p.rows_processed:,} ({p.rows_succeeded:,} succeeded, {p.rows_failed:,} failed)",
        ),
        ("rows/s", rate(p.rows_per_second)),
        ("ETA", duration(p.eta_seconds)),
        ("reason", job.failure_reason),
    ):
        table.add_row(label, cell(value))
    return table


def error_table(job: Job) -> Table:
    table = _list_table(f"errors of job {job.job_id}")
    table.add_column("code", justify="right", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("count", justify="right", no_wrap=True)
    for item in job.error_summary:
        table.add_row(cell(item.code), cell(item.name), cell(f"{item.count:,}"))
    return table


def series_table(found: Mapping[str, Any]) -> Table:
    limit = found.get("maxRedemptionsPerCoupon")
    tills = found.get("allowedTillIds")
    table = _details_table()
    for label, value in (
        ("series", found.get("id")),
        ("name", found.get("name")),
        ("redemptions per coupon", "unlimited" if limit is None else limit),
        ("same user may redeem again", "yes" if found.get("sameUserMultipleRedeem") else "no"),
        ("redemptions per customer", found.get("maxRedemptionsPerCustomer") or "unlimited"),
        ("valid from", found.get("validFrom") or "open"),
        ("valid till", found.get("validTill") or "open"),
        ("any user", "yes" if found.get("anyUser") else "no (issued coupons only)"),
        ("allowed tills", "any" if tills is None else ", ".join(tills)),
        ("created", full_time(found.get("createdAt"))),
    ):
        table.add_row(label, cell(value))
    return table


def org_table(found: Mapping[str, Any]) -> Table:
    rate = found.get("defaultMaxErrorRate")
    table = _details_table()
    for label, value in (
        ("default country code", found.get("defaultCountryCode") or "none"),
        ("time zone", found.get("timeZone") or "none"),
        ("default max error rate", "none (no guard)" if rate is None else percent(rate)),
    ):
        table.add_row(label, cell(value))
    return table


# --- a preview ----------------------------------------------------------------------------------

_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def preview_table(preview: Preview) -> Table:
    """What the service made of the file: its format, encoding, delimiter and header row."""
    table = _details_table()
    delimiter = preview.delimiter
    for label, value in (
        ("format", preview.format),
        ("encoding", preview.encoding),
        ("delimiter", _DELIMITER_NAMES.get(delimiter, delimiter) if delimiter else None),
        ("header row", "yes" if preview.has_header else "no (its first line is data)"),
        ("header", " | ".join(preview.header) if preview.has_header else None),
    ):
        table.add_row(label, cell(value))
    return table


def mapping_table(preview: Preview, mapping: Mapping[str, int | str]) -> Table:
    """uploadHeaders as the upload would send them: each key's column, and the required keys."""
    table = _list_table("mapping")
    table.add_column("key", no_wrap=True)
    table.add_column("column", justify="right", no_wrap=True)
    table.add_column("header", overflow="fold")
    table.add_column("required", no_wrap=True)
    for key, column in mapping.items():
        index = column if isinstance(column, int) else _index_of(preview.header, column)
        name = preview.header[index] if index is not None and index < len(preview.header) else None
        table.add_row(
            cell(key),
            cell(index),
            cell(name if preview.has_header else None),
            cell("yes" if key in preview.required_keys else ""),
        )
    for key in preview.required_keys:
        if key not in mapping:
            table.add_row(cell(key), cell("not mapped"), cell(None), cell("yes"))
    return table


def _index_of(header: list[str], name: str) -> int | None:
    return header.index(name) if name in header else None


def records_table(preview: Preview) -> Table:
    """The first records as the service would read them, each with the row error it would get."""
    count = len(preview.records)
    table = _list_table("first record" if count == 1 else f"first {count} records")
    table.add_column("row", justify="right", no_wrap=True)
    table.add_column("values", overflow="fold")
    table.add_column("verdict", overflow="fold")
    for record in preview.records:
        values = "\n".join(f"{key}: {value}" for key, value in record.values.items())
        if record.error_code is not None:
            verdict = f"{record.error_code} {record.error_name}\n{record.error_message}"
        else:  # "not judged: ..." when the mapping lacks a required key
            verdict = record.error_message or "would apply"
        table.add_row(cell(record.row_number), cell(values), cell(verdict))
    return table


# --- a job as it runs and as it ends -----------------------------------------------------------


def progress_view(job_id: int, job: Job | None) -> RenderableType:
    """Two lines: the job, its bar, percent and ETA; then its rows, failures and speed.

    Two, because at 80 columns one line cannot hold them all for a job of millions of rows.
    """
    bar_line = Table.grid(expand=True, padding=(0, 1))
    bar_line.add_column(no_wrap=True)
    bar_line.add_column(ratio=1)
    bar_line.add_column(no_wrap=True, justify="right")
    if job is None:
        bar_line.add_row(Text(f"job {job_id}"), ProgressBar(total=100.0), Text("  -  ETA -"))
        return bar_line
    p = job.progress
    bar_line.add_row(
        Text(f"job {job.job_id} {job.status}"),
        ProgressBar(total=100.0, completed=p.percent),
        Text(f"{p.percent:>3.0f}%  ETA {duration(p.eta_seconds)}"),
    )
    counts = Text(
        f"{p.rows_processed:,} rows, {p.rows_failed:,} failed, {rate(p.rows_per_second)} rows/s"
    )
    return Group(bar_line, counts)


def program() -> str:
    """How to run this command again: by its name when that finds it on PATH, else by the
    path it was run by (`.venv/bin/bulkredeem` in a checkout whose venv is not activated)."""
    invoked = sys.argv[0] if sys.argv and sys.argv[0] else "bulkredeem"
    name = os.path.basename(invoked)
    if name != "bulkredeem":  # run some other way (python -m, a test runner)
        return "bulkredeem"
    found = shutil.which(name)
    if found and os.path.realpath(found) == os.path.realpath(invoked):
        return name
    return os.path.relpath(invoked) if not os.path.isabs(invoked) else invoked


def print_outcome(job: Job) -> None:
    """The ended job in a line, its errors by code, and where to find the failed rows."""
    console = stdout()
    p = job.progress
    dry = " (dry run: nothing applied)" if job.dry_run else ""
    console.print(
        Text(
            f"job {job.job_id} {job.status}{dry}: {p.rows_processed:,} rows, "
            f"{p.rows_succeeded:,} succeeded, {p.rows_failed:,} failed"
        )
    )
    if job.failure_reason:
        console.print(Text(f"reason: {job.failure_reason}"))
    if job.error_summary:
        console.print(error_table(job))
        console.print(
            Text(f"failed rows: {program()} errors {job.job_id} --out errors-{job.job_id}.csv")
        )
