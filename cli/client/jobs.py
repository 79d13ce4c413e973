"""`bulkredeem errors` and `bulkredeem jobs ...`: a job's failed rows, the list, one job,
waiting for its end, cancel and revert."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.client.http import BulkRedeemClient
from cli.client.options import (
    DEFAULT_URL,
    ApiKeyOption,
    JobArg,
    JsonOption,
    UrlOption,
)
from cli.client.render import (
    error_table,
    job_table,
    jobs_lines,
    print_json,
    reported,
    show,
    stdout,
)
from cli.client.watch import wait_and_exit
from core.limits import MAX_PAGE


def errors(
    job_id: JobArg,
    out: Annotated[Path, typer.Option("--out", help="Where to write the CSV.")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Download a job's failed rows as CSV (streamed to disk): fix them and upload again."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        written = client.download_errors_csv(job_id, out)
    typer.echo(f"wrote {out} ({written:,} bytes)")


jobs_app = typer.Typer(
    help="Upload jobs: list, show, wait for, cancel, revert.", no_args_is_help=True
)


@jobs_app.command("list")
def jobs_list(
    series: Annotated[int | None, typer.Option("--series", help="Only this series'.")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=MAX_PAGE)] = 20,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """The org's jobs, newest first (times on the local clock)."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        page = client.jobs(series_id=series, status=status.upper() if status else None, limit=limit)
    if as_json:
        print_json(page.document)
    else:
        for text in jobs_lines(page.jobs, stdout().width):
            typer.echo(text)
    if page.next_cursor:
        typer.echo(f"more jobs than {limit}: raise --limit", err=True)


@jobs_app.command("show")
def jobs_show(
    job_id: JobArg,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """A job's status, progress and errors by code."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        job = client.job(job_id)
    show(job.document, as_json, job_table(job), *([error_table(job)] if job.error_summary else []))


@jobs_app.command("wait")
def jobs_wait(
    job_id: JobArg,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the job's JSON document once it ends.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Show a job's progress until it ends (exit 0, 2 with row errors, else 1)."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        wait_and_exit(client, job_id, as_json=as_json)


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobArg, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None) -> None:
    """Cancel a job: a queued one ends at once, a running one at its next chunk."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        job = client.cancel(job_id)
    if job.status == "CANCELLED":
        typer.echo(f"job {job.job_id} CANCELLED")
    else:
        typer.echo(f"job {job.job_id} {job.status}: it stops at its next chunk boundary")


@jobs_app.command("revert")
def jobs_revert(
    job_id: JobArg,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the revert until it ends.")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Undo what an import applied, as a job of its own (its redemptions kept in an archive)."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        revert = client.revert(job_id)
        typer.echo(f"job {revert.job_id} reverts job {job_id}: {revert.status}")
        if wait:
            wait_and_exit(client, revert.job_id)
