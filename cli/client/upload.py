"""`bulkredeem upload`: a file sent as a job, or previewed, and the guard it runs with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from cli.client.files import check_readable
from cli.client.headers import UploadHeaders, resolve_upload_headers
from cli.client.http import BulkRedeemClient, ClientError
from cli.client.options import (
    DEFAULT_URL,
    ApiKeyOption,
    PreviewOption,
    UrlOption,
    flag_rate,
)
from cli.client.render import (
    mapping_table,
    preview_table,
    print_json,
    records_table,
    reported,
    show,
)
from cli.client.watch import wait_and_exit
from core.guard import percent
from core.rows import CouponIdentifier, CustomerIdentifier


def upload(
    file: Annotated[Path, typer.Argument(help="The CSV of redeemed coupons.")],
    series: Annotated[int, typer.Option("--series", help="The coupon series' id.", min=1)],
    customer_identifier: Annotated[
        CustomerIdentifier,
        typer.Option(help="Which column names the customer."),
    ],
    coupon_identifier: Annotated[
        CouponIdentifier, typer.Option(help="Which column names the coupon.")
    ],
    headers: Annotated[
        str | None,
        typer.Option(
            "--headers",
            help="uploadHeaders: a JSON object, column key -> 0-based index or header name, "
            "or @FILE holding one. Omitted: the file's header row, mapped by name.",
        ),
    ] = None,
    details: Annotated[str | None, typer.Option(help="Free text kept on the job.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row, apply nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the job ends, then its errors.")
    ] = False,
    max_error_rate: Annotated[
        str | None,
        typer.Option(
            "--max-error-rate",
            help="Stop the job when more than this share of its rows fail: 0.05 or 5% (the "
            "first chunk is judged before anything is applied). Default: the org's "
            "defaultMaxErrorRate (`bulkredeem org show`); 1 turns it off for this upload.",
            show_default=False,
        ),
    ] = None,
    preview: PreviewOption = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the job's JSON document instead of its id (with --wait: once it ends; "
            "with --preview: the preview's).",
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload a CSV of redeemed coupons; prints the job id (exit 0, 2 with row errors, else 1)."""
    if preview and wait:
        raise typer.BadParameter("a preview makes no job to wait for", param_hint="--wait")
    with reported():
        # Refused here, with what the file is, rather than read for its header or sent.
        check_readable(file)
        rate = None if max_error_rate is None else flag_rate(max_error_rate, "--max-error-rate")
        if preview:
            preview_upload(
                file,
                series,
                customer_identifier,
                coupon_identifier,
                headers,
                url,
                api_key,
                as_json,
                rate,
            )
        upload_headers = resolve_upload_headers(
            file, headers, customer_identifier, coupon_identifier
        )
        if upload_headers.by_name is not None:
            named = ", ".join(f"{key}={name!r}" for key, name in upload_headers.by_name.items())
            typer.echo(f"columns by header name: {named}", err=True)
        with BulkRedeemClient(url, api_key) as client:
            job_id = client.upload(
                file,
                series,
                customer_identifier=customer_identifier.value,
                coupon_identifier=coupon_identifier.value,
                upload_headers=upload_headers.text,
                details=details,
                dry_run=dry_run,
                max_error_rate=max_error_rate,
            )
            # Said before the job gets far: its first chunk is judged before anything applies.
            typer.echo(guard_line(client, rate), err=True)
            if wait:
                if not as_json:
                    typer.echo(str(job_id))
                wait_and_exit(client, job_id, as_json=as_json)
            if as_json:
                print_json(client.job(job_id).document)
            else:
                typer.echo(str(job_id))
            typer.echo(f"queued; follow it with `bulkredeem jobs wait {job_id}`", err=True)


def guard_line(client: BulkRedeemClient, rate: float | None) -> str:
    """What stops the job: the flag's rate, else the org's default, else nothing."""
    source = "--max-error-rate"
    if rate is None:
        found = client.org().get("defaultMaxErrorRate")
        if found is None:
            return "guard: none (no --max-error-rate, and the org has no defaultMaxErrorRate)"
        rate, source = float(found), "the org's defaultMaxErrorRate"
    return f"guard: the job stops if more than {percent(rate)} of its rows fail ({source})"


def preview_upload(
    file: Path,
    series: int,
    customer_identifier: CustomerIdentifier,
    coupon_identifier: CouponIdentifier,
    headers: str | None,
    url: str,
    api_key: str | None,
    as_json: bool,
    rate: float | None = None,
) -> NoReturn:
    """`upload --preview`: the service's preview of what `upload` would send; exits 0 or 2."""
    upload_headers: UploadHeaders | None
    try:
        upload_headers = resolve_upload_headers(
            file, headers, customer_identifier, coupon_identifier
        )
    except ClientError as error:
        if headers is not None:
            raise
        # The upload would stop here; the preview still shows the file, with the service's
        # suggestion, so that the user sees which --headers to give.
        typer.echo(f"upload would refuse: {error.message}", err=True)
        upload_headers = None
    with BulkRedeemClient(url, api_key) as client:
        found = client.preview(
            file,
            series,
            customer_identifier=customer_identifier.value,
            coupon_identifier=coupon_identifier.value,
            upload_headers=None if upload_headers is None else upload_headers.text,
        )
        guard = guard_line(client, rate)
    mapping = found.suggested if upload_headers is None else upload_headers.columns
    show(
        found.document,
        as_json,
        preview_table(found),
        mapping_table(found, mapping),
        records_table(found),
    )
    if not as_json:
        verdict = (
            f"not judged: the mapping lacks {', '.join(found.missing_keys)}"
            if found.missing_keys
            else f"{found.failing} of {len(found.records)} records would fail"
        )
        typer.echo(f"{verdict}; nothing uploaded", err=True)
        typer.echo(guard, err=True)
    raise typer.Exit(0 if found.all_apply else 2)
