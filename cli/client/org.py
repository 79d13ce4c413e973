"""`bulkredeem org show|set`: the org's settings (GET and PATCH /v1/org)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.client.http import BulkRedeemClient, ClientError
from cli.client.options import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    UrlOption,
    flag_rate,
)
from cli.client.render import (
    org_table,
    reported,
    show,
)

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
