"""`bulkredeem series create|show`: coupon series over the reference API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.client.http import BulkRedeemClient
from cli.client.options import (
    DEFAULT_URL,
    ApiKeyOption,
    JsonOption,
    UrlOption,
)
from cli.client.render import (
    reported,
    series_table,
    show,
)

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
