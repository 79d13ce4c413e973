"""`bulkredeem demo`: the demo data loaded into a running service over the API."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.client.http import DEMO_MOBILE, BulkRedeemClient
from cli.client.options import (
    DEFAULT_URL,
    ApiKeyOption,
    UrlOption,
)
from cli.client.render import (
    reported,
)


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
