"""The client commands: each a thin layer over `BulkRedeemClient`, its errors one line and exit 1.

Times print on the local clock; `--json` prints the service's document in full, for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cli.client.files import check_readable
from cli.client.headers import UploadHeaders, resolve_upload_headers
from cli.client.http import DEMO_MOBILE, BulkRedeemClient, ClientError
from cli.client.render import (
    error_table,
    job_table,
    jobs_lines,
    mapping_table,
    org_table,
    preview_table,
    print_json,
    records_table,
    reported,
    series_table,
    show,
    stdout,
)
from cli.client.watch import wait_and_exit
from core.errors import DomainError
from core.guard import percent
from core.limits import MAX_PAGE
from core.rows import CouponIdentifier, CustomerIdentifier
from core.uploads.form import parse_rate

DEFAULT_URL = "http://127.0.0.1:8000"

UrlOption = Annotated[
    str, typer.Option("--url", envvar="BULKREDEEM_URL", help="The service's base URL.")
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="BULKREDEEM_API_KEY", help="An API key of the org.", show_default=False
    ),
]
JobArg = Annotated[int, typer.Argument(help="The job's id.", min=1)]
PreviewOption = Annotated[
    bool,
    typer.Option(
        "--preview",
        help="Upload nothing: show how the service reads the file's first records, the "
        "mapping it would use and each record's verdict (exit 0 if all would apply, else 2).",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the service's JSON document, in full.")
]


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


def flag_rate(value: str, flag: str) -> float:
    """A rate given on the command line, judged by the service's own rule before it is sent."""
    try:
        return parse_rate(value, flag)
    except DomainError as error:
        raise ClientError(error.message) from None


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


org_app = typer.Typer(help="The org's settings (the API key's org).", no_args_is_help=True)


@org_app.command("show")
def org_show(
    as_json: JsonOption = False, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None
) -> None:
    """The org's default country code, time zone and default max error rate."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        found = client.org()
    show(found, as_json, org_table(found))


_CLEAR_HINT = "Give '' to clear it."


@org_app.command("set")
def org_set(
    default_country_code: Annotated[
        str | None,
        typer.Option(
            help=f"The country calling code tried on mobiles that match no customer as written "
            f"(91). {_CLEAR_HINT}",
            show_default=False,
        ),
    ] = None,
    time_zone: Annotated[
        str | None,
        typer.Option(
            help=f"An IANA time zone (Asia/Kolkata), for dates in spreadsheets. {_CLEAR_HINT}",
            show_default=False,
        ),
    ] = None,
    default_max_error_rate: Annotated[
        str | None,
        typer.Option(
            help=f"The guard of every upload that names no rate: 0.05 or 5%. {_CLEAR_HINT}",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Change the settings given; the others stay as they are."""
    changes: dict[str, Any] = {}
    if default_country_code is not None:
        changes["defaultCountryCode"] = default_country_code or None
    if time_zone is not None:
        changes["timeZone"] = time_zone or None
    with reported():
        if default_max_error_rate is not None:
            changes["defaultMaxErrorRate"] = (
                flag_rate(default_max_error_rate, "--default-max-error-rate")
                if default_max_error_rate
                else None
            )
        if not changes:
            raise ClientError(
                "nothing to set: give --default-country-code, --time-zone or "
                "--default-max-error-rate"
            )
        with BulkRedeemClient(url, api_key) as client:
            found = client.change_org(changes)
    show(found, as_json, org_table(found))


series_app = typer.Typer(help="Coupon series: create, show.", no_args_is_help=True)


@series_app.command("create")
def series_create(
    name: Annotated[str, typer.Option(help="The series' name.")],
    max_redemptions_per_coupon: Annotated[
        int | None, typer.Option(help="Redemptions a coupon allows (default 1).", min=1)
    ] = None,
    unlimited: Annotated[
        bool, typer.Option("--unlimited", help="Coupons may be redeemed without limit.")
    ] = False,
    same_user_multiple_redeem: Annotated[
        bool,
        typer.Option(
            "--same-user-multiple-redeem", help="A customer may redeem the same coupon again."
        ),
    ] = False,
    max_redemptions_per_customer: Annotated[
        int | None, typer.Option(help="A customer's redemptions across the series.", min=1)
    ] = None,
    valid_from: Annotated[
        str | None, typer.Option(help="ISO 8601, inclusive (UTC without an offset).")
    ] = None,
    valid_till: Annotated[
        str | None, typer.Option(help="ISO 8601, inclusive (UTC without an offset).")
    ] = None,
    any_user: Annotated[
        bool, typer.Option("--any-user", help="Coupons need not be issued to the customer.")
    ] = False,
    allowed_till: Annotated[
        list[str] | None,
        typer.Option("--allowed-till", help="A till that may redeem (repeat it); default: any."),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Create a coupon series; prints its id."""
    if unlimited and max_redemptions_per_coupon is not None:
        raise typer.BadParameter(
            "give --max-redemptions-per-coupon or --unlimited, not both",
            param_hint="--unlimited",
        )
    body: dict[str, Any] = {"name": name}
    if unlimited:
        body["maxRedemptionsPerCoupon"] = None
    elif max_redemptions_per_coupon is not None:
        body["maxRedemptionsPerCoupon"] = max_redemptions_per_coupon
    if same_user_multiple_redeem:
        body["sameUserMultipleRedeem"] = True
    if max_redemptions_per_customer is not None:
        body["maxRedemptionsPerCustomer"] = max_redemptions_per_customer
    if valid_from is not None:
        body["validFrom"] = valid_from
    if valid_till is not None:
        body["validTill"] = valid_till
    if any_user:
        body["anyUser"] = True
    if allowed_till:
        body["allowedTillIds"] = list(allowed_till)
    with reported(), BulkRedeemClient(url, api_key) as client:
        series_id = client.create_series(body)
    typer.echo(str(series_id))


@series_app.command("show")
def series_show(
    series_id: Annotated[int, typer.Argument(help="The series' id.", min=1)],
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """A coupon series and its rules."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        found = client.series(series_id)
    show(found, as_json, series_table(found))


def demo(
    ctx: typer.Context,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Load the demo data into a running service (the key's org) over the API."""
    if ctx.invoked_subcommand is not None:
        return  # `demo seed`: the database, not the API
    with reported(), BulkRedeemClient(url, api_key) as client:
        loaded = client.load_demo()
    typer.echo(f"series id: {loaded.series_id}")
    typer.echo(f"customer userId {loaded.user_id}, mobile {DEMO_MOBILE}")
    for coupon_id, code in loaded.coupons:
        typer.echo(f"coupon id {coupon_id}, code {code}")
    sample = Path("examples") / "sample2.csv"
    typer.echo(
        f"try: bulkredeem upload {sample} --series {loaded.series_id} "
        "--customer-identifier MOBILE --coupon-identifier COUPON_CODE --wait"
    )
    typer.echo(
        f"({Path('examples') / 'sample1.csv'} names userId 23599838 and couponId 23456, the ids "
        "`make run` seeds: put the ids above in a copy of it to redeem DEMO23456)"
    )
