"""Following a job until it ends: polls that ride out rate limits, with a live view on stderr."""

from __future__ import annotations

import time
from typing import NoReturn

import typer
from rich.live import Live

from cli.client.documents import Job
from cli.client.http import BulkRedeemClient, ClientError
from cli.client.render import print_json, print_outcome, progress_view, stderr

POLL_SECONDS = 0.5


def follow(client: BulkRedeemClient, job_id: int) -> Job:
    """Poll the job until it ends, showing its progress on stderr (its last frame stays)."""
    console = stderr()
    with Live(progress_view(job_id, None), console=console, refresh_per_second=4) as live:
        job = _poll_until_ended(client, job_id, live)
    if not console.is_terminal:
        console.line()  # rich ends the last frame with a line end only on a terminal
    return job


def _poll_until_ended(client: BulkRedeemClient, job_id: int, live: Live) -> Job:
    while True:
        try:
            job = client.job(job_id)
        except ClientError as error:
            if error.status == 429:
                time.sleep(error.retry_after or 1.0)
                continue
            error.message += f"; the job goes on (`bulkredeem jobs wait {job_id}`)"
            raise
        live.update(progress_view(job_id, job))
        if job.finished:
            return job
        time.sleep(POLL_SECONDS)


def wait_and_exit(client: BulkRedeemClient, job_id: int, *, as_json: bool = False) -> NoReturn:
    """Follow the job, then print how it ended (or its document) and exit by its status."""
    try:
        job = follow(client, job_id)
    except KeyboardInterrupt:
        typer.echo(
            f"stopped watching job {job_id}; it goes on (`bulkredeem jobs wait {job_id}`)",
            err=True,
        )
        raise typer.Exit(130) from None
    if as_json:
        print_json(job.document)
    else:
        print_outcome(job)
    raise typer.Exit(job.exit_code)
