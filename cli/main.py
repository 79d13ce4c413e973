"""The `bulkredeem` command: migrations, orgs and API keys, demo data, and the dev runner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, NoReturn

import typer
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from cli.client import demo as client_demo
from cli.client import jobs as client_jobs
from cli.client import org as client_org
from cli.client import series as client_series
from cli.client import upload as client_upload
from cli.embedded import postgres as embedded_postgres
from cli.embedded.common import DevServiceError, display_path, redacted
from core import keys
from core import migrate as core_migrate
from core.db import sqlalchemy_url
from core.demo import DemoData, DemoSeedError, seed_demo
from core.models import ApiKey, Org
from core.settings import get_settings
from core.webhooks import signing

app = typer.Typer(
    name="bulkredeem",
    help="Bulk coupon-redemption imports: a client of a running service (upload, jobs, errors, "
    "series, demo), and administration and local development (migrate, orgs, keys, dev).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
orgs_app = typer.Typer(help="Orgs (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (shown once, stored as hashes).", no_args_is_help=True)
demo_app = typer.Typer(help="The demo data that `make run` starts with.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
app.add_typer(demo_app, name="demo")
# The client commands (cli/client/): they talk to a running service over HTTP, never the DB.
app.command("upload")(client_upload.upload)
app.command("errors")(client_jobs.errors)
app.add_typer(client_jobs.jobs_app, name="jobs")
app.add_typer(client_series.series_app, name="series")
app.add_typer(client_org.org_app, name="org")
# Bare `bulkredeem demo` loads the demo data over the API; `demo seed` stays the DB seeder.
demo_app.callback(
    invoke_without_command=True,
    no_args_is_help=False,
    help="The demo data: `demo` loads it into a running service over the API (the key's org); "
    "`demo seed` writes it into the database directly, as `make run` does.",
)(client_demo.demo)

CONNECT_TIMEOUT_SECONDS = 5


def fail(message: str) -> NoReturn:
    typer.secho(f"bulkredeem: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


def admin_url(*, create: bool = False) -> str:
    """Migrations, orgs and keys are the operator's business: the owner role when there is one.

    With no database URL in the environment, that is `make run`'s embedded Postgres in
    ./.data/pg, started for the command if it is not running (cli/embedded/postgres.py's rule).
    `create`: set one up there if there is none yet (migrate does, as `make run` does).
    """
    try:
        embedded = embedded_postgres.use_embedded_database(create=create)
    except DevServiceError as exc:
        fail(str(exc))
    if embedded is not None:
        state = (
            "running"
            if embedded.was_running
            else "started for this command; it stops when the command ends"
        )
        where = display_path(embedded.pgdata)
        typer.echo(f"DATABASE_URL is unset: the embedded Postgres in {where} ({state})", err=True)
    settings = get_settings()
    return settings.database_admin_url or settings.database_url


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn the usual database mistakes into one clear line instead of a traceback."""
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        fail(
            f"cannot reach the database at {redacted(url)}: {reason}\n"
            "Start Postgres, or point DATABASE_URL (and DATABASE_ADMIN_URL) at a running server; "
            "with both unset, the admin commands use `make run`'s embedded one in ./.data/pg."
        )
    except ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42P01":  # undefined_table
            fail(f"the database at {redacted(url)} has no schema yet: run `bulkredeem migrate`")
        raise


@contextmanager
def admin_session() -> Iterator[Session]:
    """One transaction on the admin URL, committed when the block succeeds."""
    url = admin_url()
    engine = create_engine(
        sqlalchemy_url(url),
        poolclass=NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )
    try:
        with (
            database_errors(url),
            Session(engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session
    finally:
        engine.dispose()


def _org_id(session: Session, name: str) -> int:
    org_id = session.execute(select(Org.id).where(Org.name == name)).scalar_one_or_none()
    if org_id is None:
        known = session.execute(select(Org.name).order_by(Org.name).limit(10)).scalars().all()
        hint = f" (known: {', '.join(known)})" if known else " (there are no orgs yet)"
        fail(f"no org named {name!r}{hint}; create one with `bulkredeem orgs create NAME`")
    return org_id


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


# --- migrate -----------------------------------------------------------------------------------


def run_migrations() -> str:
    """Upgrade the schema to head; the URL it used, for messages."""
    url = admin_url(create=True)
    with database_errors(url):
        core_migrate.upgrade(url)
    return url


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision (DATABASE_ADMIN_URL if set).

    With no database URL set: the embedded Postgres in ./.data/pg, set up there if need be.
    """
    url = run_migrations()
    typer.echo(f"database {redacted(url)} is up to date")


# --- orgs --------------------------------------------------------------------------------------


@orgs_app.command("create")
def orgs_create(name: Annotated[str, typer.Argument(help="A unique name for the org.")]) -> None:
    """Create an org and its first API key (printed once)."""
    name = name.strip()
    if not name:
        fail("an org needs a non-empty name")
    with admin_session() as session:
        if session.execute(select(Org.id).where(Org.name == name)).first():
            fail(f"an org named {name!r} already exists; add a key with `bulkredeem keys create`")
        try:
            org, issued = keys.create_org(session, name)
        except IntegrityError:
            fail(f"an org named {name!r} already exists")
    typer.echo(f"org id: {org.id}")
    typer.echo(f"key id: {issued.id}")
    typer.echo(f"API key: {issued.key}")
    typer.echo("Store the key now: it is not shown again (only its hash is kept).", err=True)


@orgs_app.command("webhook-secret")
def orgs_webhook_secret(
    name: Annotated[str, typer.Argument(help="The org whose secret to show.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace it: later deliveries use the new one.")
    ] = False,
) -> None:
    """Print the secret that signs the org's completion webhooks (made on first use)."""
    with admin_session() as session:
        secret = signing.admin_secret(session, _org_id(session, name), rotate=rotate)
    typer.echo(secret)


# --- keys --------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    org_name: Annotated[str, typer.Argument(help="The org the key acts for.")],
    label: Annotated[str | None, typer.Option(help="A note to tell keys apart.")] = None,
) -> None:
    """Issue another API key for an org (printed once)."""
    with admin_session() as session:
        issued = keys.create_key(session, _org_id(session, org_name), label=label)
    typer.echo(f"key id: {issued.id}")
    typer.echo(f"API key: {issued.key}")
    typer.echo("Store the key now: it is not shown again (only its hash is kept).", err=True)


@keys_app.command("list")
def keys_list(org_name: Annotated[str, typer.Argument(help="The org whose keys to list.")]) -> None:
    """List an org's keys: prefix, label, created, last used, revoked. Never the keys."""
    with admin_session() as session:
        rows = session.execute(
            select(ApiKey).where(ApiKey.org_id == _org_id(session, org_name)).order_by(ApiKey.id)
        ).scalars()
        table = [
            (
                str(row.id),
                row.prefix + "...",
                row.label or "-",
                _when(row.created_at),
                _when(row.last_used_at),
                _when(row.revoked_at),
            )
            for row in rows
        ]
    header = ("id", "prefix", "label", "created", "last used", "revoked")
    widths = [max(len(cells[i]) for cells in [header, *table]) for i in range(len(header))]
    for cells in [header, *table]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="The id `keys list` shows.")]) -> None:
    """Revoke an API key: requests with it get 401 from now on."""
    with admin_session() as session:
        if not keys.revoke_key(session, key_id):
            exists = session.execute(
                select(func.count()).select_from(ApiKey).where(ApiKey.id == key_id)
            ).scalar_one()
            fail(f"key {key_id} is already revoked" if exists else f"there is no key {key_id}")
    typer.echo(f"key {key_id} revoked")


# --- demo --------------------------------------------------------------------------------------


def seed_demo_data() -> DemoData:
    """Seed the demo data in its own transaction (the admin URL when set)."""
    with admin_session() as session:
        try:
            return seed_demo(session)
        except DemoSeedError as exc:
            fail(f"cannot seed the demo data: {exc} (`make clean-data` starts afresh)")


@demo_app.command("seed")
def demo_seed() -> None:
    """Create or repair the demo org, series, customer and coupons, and print a fresh key."""
    demo = seed_demo_data()
    typer.echo(f"org id: {demo.org_id}")
    typer.echo(f"series id: {demo.series_id}")
    typer.echo(f"customer userId {demo.customer_id}, mobile {demo.customer_mobile}")
    typer.echo(f"coupons: id {demo.coupon_id} ({demo.coupon_id_code}), code {demo.coupon_code}")
    typer.echo(f"API key: {demo.api_key}")


# --- dev ---------------------------------------------------------------------------------------


@app.command()
def dev(
    port: Annotated[
        int, typer.Option(envvar="BULKREDEEM_PORT", help="The API's port on 127.0.0.1.")
    ] = 8000,
) -> None:
    """Run it all locally until Ctrl-C (what `make run` runs): DB, Redis, API, worker, beat."""
    from cli.devrun import DevRunner

    runner = DevRunner(port=port, migrate=run_migrations, seed=seed_demo_data)
    raise typer.Exit(runner.run())


if __name__ == "__main__":
    app()
