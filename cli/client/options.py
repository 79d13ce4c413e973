"""The options every client command shares: where the service is, the key, a job, --json."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client.http import ClientError
from core.errors import DomainError
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


def flag_rate(value: str, flag: str) -> float:
    """A rate given on the command line, judged by the service's own rule before it is sent."""
    try:
        return parse_rate(value, flag)
    except DomainError as error:
        raise ClientError(error.message) from None
