"""`bulkredeem` as a client of a running service: uploads with live progress, jobs, series, demo.

Everything here goes through the HTTP API (never the database), so it works against any
deployment the user has a key for. `BulkRedeemClient` holds the HTTP calls; the commands are
thin over it and turn its `ClientError`s into one clear line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, NoReturn, Self

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from core.csvstream import detect_delimiter, read_records, sniff_encoding
from core.jobs import TERMINAL

DEFAULT_URL = "http://127.0.0.1:8000"
EXIT_BY_STATUS = {"COMPLETED": 0, "COMPLETED_WITH_ERRORS": 2}  # anything else ends 1
POLL_SECONDS = 0.5
HEADER_SAMPLE_BYTES = 64 * 1024

# What `bulkredeem demo` loads (DESIGN.md, Demo data); the ids are whatever the service assigns.
DEMO_SERIES = "demo"
DEMO_VALID_FROM = "2020-01-01T00:00:00"
DEMO_MOBILE = "9988776655"
DEMO_COUPON_CODES = ("DEMO23456", "ABCDEF1")


class CustomerIdentifier(StrEnum):
    MOBILE = "MOBILE"
    EXTERNAL_ID = "EXTERNAL_ID"
    EMAIL = "EMAIL"
    USER_ID = "USER_ID"


class CouponIdentifier(StrEnum):
    COUPON_ID = "COUPON_ID"
    COUPON_CODE = "COUPON_CODE"


CUSTOMER_KEY = {
    CustomerIdentifier.MOBILE: "mobile",
    CustomerIdentifier.EXTERNAL_ID: "externalId",
    CustomerIdentifier.EMAIL: "email",
    CustomerIdentifier.USER_ID: "userId",
}
COUPON_KEY = {CouponIdentifier.COUPON_ID: "couponId", CouponIdentifier.COUPON_CODE: "couponCode"}

# Header names (normalised: lower case, letters and digits only) the CLI maps to column keys.
HEADER_ALIASES: dict[str, str] = {
    **{
        name: "redeemedDateInMillis"
        for name in (
            "redeemeddateinmillis",
            "redemptiondateinmillis",
            "redeemeddate",
            "redemptiondate",
            "redeemedon",
        )
    },
    **{name: "redeemedAt" for name in ("redeemedat", "till", "tillid", "tillcode")},
    **{name: "mobile" for name in ("mobile", "mobileno", "mobilenumber", "phone", "phonenumber")},
    **{name: "email" for name in ("email", "emailid", "emailaddress")},
    **{name: "externalId" for name in ("externalid",)},
    **{name: "userId" for name in ("userid",)},
    **{name: "couponId" for name in ("couponid",)},
    **{name: "couponCode" for name in ("couponcode", "code")},
    **{name: "billId" for name in ("billid",)},
    **{name: "billNumber" for name in ("billnumber", "billno")},
    **{name: "details" for name in ("details", "detail")},
}


class ClientError(Exception):
    """What went wrong, as one line for the user, plus the service's per-field problems."""

    def __init__(
        self,
        message: str,
        details: Sequence[str] = (),
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.status = status
        self.retry_after = retry_after


class ConnectionDropped(ClientError):
    """The connection broke after it was made (a reset, a closed socket, a protocol error)."""


# --- the service's documents -------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    percent: float
    rows_processed: int
    rows_succeeded: int
    rows_failed: int
    rows_per_second: float | None
    eta_seconds: float | None


@dataclass(frozen=True)
class ErrorCount:
    code: int
    name: str
    count: int


@dataclass(frozen=True)
class Job:
    """GET /v1/jobs/{id}, the parts the CLI shows; `document` keeps it all."""

    job_id: int
    series_id: int
    status: str
    file_name: str
    dry_run: bool
    created_at: str | None
    finished_at: str | None
    progress: JobProgress
    error_summary: list[ErrorCount]
    failure_reason: str | None
    document: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def exit_code(self) -> int:
        return EXIT_BY_STATUS.get(self.status, 1)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Job:
        progress = doc.get("progress") or {}
        return cls(
            job_id=int(doc["jobId"]),
            series_id=int(doc.get("couponSeriesId") or 0),
            status=str(doc["status"]),
            file_name=str(doc.get("fileName") or ""),
            dry_run=bool(doc.get("dryRun", False)),
            created_at=doc.get("createdAt"),
            finished_at=doc.get("finishedAt"),
            progress=JobProgress(
                percent=float(progress.get("percent") or 0.0),
                rows_processed=int(progress.get("rowsProcessed") or 0),
                rows_succeeded=int(progress.get("rowsSucceeded") or 0),
                rows_failed=int(progress.get("rowsFailed") or 0),
                rows_per_second=progress.get("rowsPerSecond"),
                eta_seconds=progress.get("etaSeconds"),
            ),
            error_summary=[
                ErrorCount(int(item["code"]), str(item.get("name", "")), int(item["count"]))
                for item in doc.get("errorSummary") or []
            ],
            failure_reason=doc.get("failureReason"),
            document=doc,
        )


@dataclass(frozen=True)
class DemoLoaded:
    series_id: int
    user_id: int
    coupons: list[tuple[int, str]]  # (couponId, code)


# --- the HTTP client ---------------------------------------------------------------------------


class BulkRedeemClient:
    """The service's HTTP API, as the CLI uses it. Every failure is a `ClientError`."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 30.0) -> None:
        if not api_key:
            raise ClientError(
                "no API key: set BULKREDEEM_API_KEY or pass --api-key "
                "(`bulkredeem orgs create NAME` prints one)"
            )
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "bulkredeem-cli"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.close()

    # Transport and answers.

    @contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot reach the service at {self.base_url} ({_reason(exc)}): start it "
                "(`make run`) or point BULKREDEEM_URL / --url at it"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the service at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ConnectionDropped(f"talking to {self.base_url} failed: {_reason(exc)}") from None

    @contextmanager
    def _shape(self, path: str) -> Iterator[None]:
        """A document without the fields the contract promises: the URL is not the service."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError):
            raise ClientError(
                f"{self.base_url}{path} answered an unexpected document: "
                "is BULKREDEEM_URL the bulkredeem service?"
            ) from None

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        message, details = _envelope(response)
        status = response.status_code
        if status == 401:
            raise ClientError(
                f"the service at {self.base_url} refused the API key ({message}): "
                "check BULKREDEEM_API_KEY or --api-key",
                status=status,
            )
        retry_after: float | None = None
        if status == 429:
            try:
                retry_after = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                retry_after = 1.0
            message = f"{message} (retry in {retry_after:g} s)"
        raise ClientError(
            f"the service answered {status}: {message}",
            details,
            status=status,
            retry_after=retry_after,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._transport_errors():
            response = self._http.request(method, path, **kwargs)
        self._check(response)
        try:
            body = response.json()
        except ValueError:
            raise ClientError(
                f"{self.base_url}{path} did not answer JSON: is BULKREDEEM_URL the service?"
            ) from None
        if not isinstance(body, dict):
            raise ClientError(f"{self.base_url}{path} answered an unexpected document")
        return body

    # Uploads and jobs.

    def upload(
        self,
        path: Path,
        series_id: int,
        *,
        customer_identifier: str,
        coupon_identifier: str,
        upload_headers: str,
        details: str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Upload a file (streamed from disk, never read whole); the new job's id."""
        fields = {
            "customerIdentifier": customer_identifier,
            "couponIdentifier": coupon_identifier,
            "uploadHeaders": upload_headers,
        }
        if details is not None:
            fields["details"] = details
        if dry_run:
            fields["dryRun"] = "true"
        # The service answers an unknown series before it reads the body, and closes the
        # connection on a client still sending: ask first, so a big file fails with a reason.
        self.series(series_id)
        path_of_upload = f"/coupon/api/v1/upload/redeemFile/{series_id}"
        try:
            with path.open("rb") as handle:
                body = self._json(
                    "POST",
                    path_of_upload,
                    data=fields,
                    files={"file": (path.name, handle, "text/csv")},
                    # Writing a big file and the service storing it take longer than a poll.
                    timeout=httpx.Timeout(600.0, connect=5.0),
                )
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
        except ConnectionDropped as error:
            error.message += (
                " (the service drops an upload over its size or row limit, "
                "BULKREDEEM_MAX_UPLOAD_BYTES / BULKREDEEM_MAX_ROWS, while it is sent)"
            )
            raise
        with self._shape(path_of_upload):
            return int(body["result"]["redeemUploadJobStatuses"][0]["jobId"])

    def job(self, job_id: int) -> Job:
        path = f"/v1/jobs/{job_id}"
        body = self._json("GET", path)
        with self._shape(path):
            return Job.from_json(body)

    def jobs(
        self, *, series_id: int | None = None, status: str | None = None, limit: int = 20
    ) -> tuple[list[Job], str | None]:
        """The org's jobs, newest first, and the cursor of the next page if there is one."""
        params: dict[str, str | int] = {"limit": limit}
        if series_id is not None:
            params["couponSeriesId"] = series_id
        if status is not None:
            params["status"] = status
        body = self._json("GET", "/v1/jobs", params=params)
        with self._shape("/v1/jobs"):
            return [Job.from_json(item) for item in body["items"]], body.get("nextCursor")

    def cancel(self, job_id: int) -> Job:
        path = f"/v1/jobs/{job_id}/cancel"
        body = self._json("POST", path)
        with self._shape(path):
            return Job.from_json(body)

    def download_errors_csv(self, job_id: int, out: Path) -> int:
        """Stream the job's errors CSV into `out` (whole or not at all); the bytes written."""
        partial = out.with_name(out.name + ".part")
        written = 0
        try:
            with (
                self._transport_errors(),
                self._http.stream("GET", f"/v1/jobs/{job_id}/errors.csv") as response,
            ):
                self._check(response)
                with partial.open("wb") as sink:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                        written += len(chunk)
            partial.replace(out)
        except OSError as exc:
            raise ClientError(f"cannot write {out}: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        return written

    # Reference data.

    def create_series(self, body: Mapping[str, Any]) -> int:
        """Create a series; its id."""
        created = self._json("POST", "/v1/coupon-series", json=dict(body))
        with self._shape("/v1/coupon-series"):
            return int(created["id"])

    def series(self, series_id: int) -> dict[str, Any]:
        return self._json("GET", f"/v1/coupon-series/{series_id}")

    def upsert_customers(self, customers: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create or update customers; their userIds, in input order."""
        body = self._json("POST", "/v1/customers", json={"customers": list(customers)})
        with self._shape("/v1/customers"):
            return [int(item["userId"]) for item in body["customers"]]

    def create_coupons(
        self, series_id: int, coupons: Sequence[Mapping[str, Any]]
    ) -> list[tuple[int, str]]:
        """Create coupons in a series; their (couponId, code), in input order."""
        path = f"/v1/coupon-series/{series_id}/coupons"
        body = self._json("POST", path, json={"coupons": list(coupons)})
        with self._shape(path):
            return [(int(item["couponId"]), str(item["code"])) for item in body["coupons"]]

    def load_demo(self) -> DemoLoaded:
        """DESIGN.md's demo data in the key's org: a new series each time, the same customer."""
        series_id = self.create_series({"name": DEMO_SERIES, "validFrom": DEMO_VALID_FROM})
        (user_id,) = self.upsert_customers([{"mobile": DEMO_MOBILE}])
        coupons = self.create_coupons(
            series_id,
            [{"code": code, "issuedTo": {"userId": user_id}} for code in DEMO_COUPON_CODES],
        )
        return DemoLoaded(series_id, user_id, coupons)


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    if "Connection refused" in text:
        return "connection refused"
    return text.splitlines()[0] if text else type(exc).__name__


def _envelope(response: httpx.Response) -> tuple[str, list[str]]:
    """The error envelope's message and `field: message` lines, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip().splitlines()
        return (text[0][:200] if text else response.reason_phrase or "no message"), []
    status = body.get("status")
    message = status.get("message") if isinstance(status, dict) else None
    details = [
        f"{item.get('field', '?')}: {item.get('message', '')}"
        for item in body.get("errors") or []
        if isinstance(item, dict)
    ]
    return str(message or response.reason_phrase or "no message"), details


# --- mapping a header row by name --------------------------------------------------------------


def normalised(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def read_header_row(path: Path) -> list[str]:
    """The file's first record (its header, if it has one), read as the service reads it:
    the same encoding sniffing, delimiter detection and CSV rules (core/csvstream.py)."""
    with path.open("rb") as handle:
        encoding, bom = sniff_encoding(handle.read(4))
        handle.seek(bom)
        sample = handle.read(HEADER_SAMPLE_BYTES).decode(encoding, "replace")
        handle.seek(bom)
        records = read_records(
            handle, encoding=encoding, delimiter=detect_delimiter(sample), offset=bom
        )
        try:
            first = next((r for r in records if not r.is_blank), None)
        finally:
            records.close()
    return [] if first is None else [cell.strip() for cell in first.cells]


def map_header_by_name(
    header: Sequence[str], customer: CustomerIdentifier, coupon: CouponIdentifier
) -> dict[str, str]:
    """uploadHeaders naming columns by their header names, or a ClientError saying why not."""
    hint = "pass --headers '{\"<key>\": <column index or header name>, ...}'"
    columns = ", ".join(repr(cell) for cell in header) or "nothing"
    mapping: dict[str, str] = {}
    for cell in header:
        key = HEADER_ALIASES.get(normalised(cell))
        if key is None:
            continue
        if key in mapping:
            raise ClientError(
                f"two columns could be {key}: {mapping[key]!r} and {cell!r}; {hint}",
            )
        mapping[key] = cell
    if not mapping:
        raise ClientError(
            f"the file's first line is not a header row the CLI can map by name "
            f"(it reads {columns}); {hint}"
        )
    mandatory = (CUSTOMER_KEY[customer], COUPON_KEY[coupon], "redeemedDateInMillis", "redeemedAt")
    missing = [key for key in mandatory if key not in mapping]
    if missing:
        raise ClientError(
            f"no column of the header row maps to {', '.join(missing)} "
            f"(the header has {columns}); {hint}"
        )
    return mapping


def resolve_upload_headers(
    file: Path, headers: str | None, customer: CustomerIdentifier, coupon: CouponIdentifier
) -> str:
    """The uploadHeaders to send: --headers as given (or read from @FILE), else by name."""
    if headers is None:
        try:
            header = read_header_row(file)
        except OSError as exc:
            raise ClientError(f"cannot read {file}: {exc.strerror or exc}") from None
        mapping = map_header_by_name(header, customer, coupon)
        named = ", ".join(f"{key}={name!r}" for key, name in mapping.items())
        typer.echo(f"columns by header name: {named}", err=True)
        return json.dumps(mapping)
    if headers.startswith("@"):
        try:
            headers = Path(headers[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ClientError(f"cannot read {headers[1:]}: {exc.strerror or exc}") from None
    try:
        parsed = json.loads(headers)
    except ValueError as exc:
        raise ClientError(f"--headers is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ClientError("--headers must be a JSON object: column key -> index or header name")
    return headers


# --- output ------------------------------------------------------------------------------------


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rate(rows_per_second: float | None) -> str:
    return "-" if rows_per_second is None else f"{rows_per_second:,.0f}"


def _cell(value: object) -> Text:
    # Text, not a str: a file name or message with [brackets] is not rich markup.
    return Text("-" if value is None or value == "" else str(value))


def error_table(job: Job) -> Table:
    table = Table(title=f"errors of job {job.job_id}", title_justify="left")
    table.add_column("code", justify="right")
    table.add_column("name")
    table.add_column("count", justify="right")
    for item in job.error_summary:
        table.add_row(_cell(item.code), _cell(item.name), _cell(f"{item.count:,}"))
    return table


def print_outcome(job: Job) -> None:
    """The ended job in a line, its errors by code, and where to find the failed rows."""
    out = _out()
    p = job.progress
    dry = " (dry run: nothing applied)" if job.dry_run else ""
    out.print(
        Text(
            f"job {job.job_id} {job.status}{dry}: {p.rows_processed:,} rows, "
            f"{p.rows_succeeded:,} succeeded, {p.rows_failed:,} failed"
        )
    )
    if job.failure_reason:
        out.print(Text(f"reason: {job.failure_reason}"))
    if job.error_summary:
        out.print(error_table(job))
        out.print(
            Text(f"failed rows: bulkredeem errors {job.job_id} --out errors-{job.job_id}.csv")
        )


def follow(client: BulkRedeemClient, job_id: int) -> Job:
    """Poll the job until it ends, with a live progress bar on stderr."""
    columns = (
        TextColumn("job {task.fields[job]} {task.fields[status]:<9}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]} rows, {task.fields[rate]} rows/s"),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=_err()) as bar:
        task = bar.add_task(
            "", total=100.0, job=job_id, status="", rows=0, rate="-", failed=0, eta="-"
        )
        while True:
            try:
                job = client.job(job_id)
            except ClientError as error:
                if error.status == 429:
                    time.sleep(error.retry_after or 1.0)
                    continue
                error.message += f"; the job goes on (`bulkredeem jobs wait {job_id}`)"
                raise
            p = job.progress
            bar.update(
                task,
                completed=p.percent,
                status=job.status,
                rows=f"{p.rows_processed:,}",
                rate=_rate(p.rows_per_second),
                failed=f"{p.rows_failed:,}",
                eta=_duration(p.eta_seconds),
            )
            if job.finished:
                return job
            time.sleep(POLL_SECONDS)


def wait_and_exit(client: BulkRedeemClient, job_id: int) -> NoReturn:
    try:
        job = follow(client, job_id)
    except KeyboardInterrupt:
        typer.echo(
            f"stopped watching job {job_id}; it goes on (`bulkredeem jobs wait {job_id}`)",
            err=True,
        )
        raise typer.Exit(130) from None
    print_outcome(job)
    raise typer.Exit(job.exit_code)


# --- commands ----------------------------------------------------------------------------------

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
JsonOption = Annotated[bool, typer.Option("--json", help="Print the service's JSON document.")]


def _print_json(document: Mapping[str, Any]) -> None:
    typer.echo(json.dumps(document, indent=2))


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
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload a file of redeemed coupons; prints the job id (exit 0, 2 with row errors, else 1)."""
    with reported():
        if not file.is_file():
            raise ClientError(f"{file}: no such file")
        upload_headers = resolve_upload_headers(
            file, headers, customer_identifier, coupon_identifier
        )
        with BulkRedeemClient(url, api_key) as client:
            job_id = client.upload(
                file,
                series,
                customer_identifier=customer_identifier.value,
                coupon_identifier=coupon_identifier.value,
                upload_headers=upload_headers,
                details=details,
                dry_run=dry_run,
            )
            typer.echo(str(job_id))
            if wait:
                wait_and_exit(client, job_id)
            typer.echo(f"queued; follow it with `bulkredeem jobs wait {job_id}`", err=True)


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


jobs_app = typer.Typer(help="Upload jobs: list, show, wait for, cancel.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    series: Annotated[int | None, typer.Option("--series", help="Only this series'.")] = None,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=500)] = 20,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """The org's jobs, newest first."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        found, next_cursor = client.jobs(
            series_id=series, status=status.upper() if status else None, limit=limit
        )
    table = Table()
    for name in ("job", "series"):
        table.add_column(name, justify="right")
    table.add_column("status")
    table.add_column("file")
    for name in ("rows", "failed"):
        table.add_column(name, justify="right")
    table.add_column("created")
    for job in found:
        table.add_row(
            _cell(job.job_id),
            _cell(job.series_id),
            _cell(job.status + (" (dry run)" if job.dry_run else "")),
            _cell(job.file_name),
            _cell(f"{job.progress.rows_processed:,}"),
            _cell(f"{job.progress.rows_failed:,}"),
            _cell(job.created_at),
        )
    _out().print(table)
    if next_cursor:
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
    if as_json:
        _print_json(job.document)
        return
    p = job.progress
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("job", job.job_id),
        ("series", job.series_id),
        ("status", job.status),
        ("dry run", "yes" if job.dry_run else "no"),
        ("file", job.file_name),
        ("created", job.created_at),
        ("finished", job.finished_at),
        ("progress", f"{p.percent:.1f}%"),
        (
            "rows",
            f"{p.rows_processed:,} ({p.rows_succeeded:,} succeeded, {p.rows_failed:,} failed)",
        ),
        ("rows/s", _rate(p.rows_per_second)),
        ("ETA", _duration(p.eta_seconds)),
        ("reason", job.failure_reason),
    ):
        table.add_row(label, _cell(value))
    out = _out()
    out.print(table)
    if job.error_summary:
        out.print(error_table(job))


@jobs_app.command("wait")
def jobs_wait(job_id: JobArg, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None) -> None:
    """Show a job's progress until it ends (exit 0, 2 with row errors, else 1)."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        wait_and_exit(client, job_id)


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobArg, url: UrlOption = DEFAULT_URL, api_key: ApiKeyOption = None) -> None:
    """Cancel a job: a queued one ends at once, a running one at its next chunk."""
    with reported(), BulkRedeemClient(url, api_key) as client:
        job = client.cancel(job_id)
    if job.status == "CANCELLED":
        typer.echo(f"job {job.job_id} CANCELLED")
    else:
        typer.echo(f"job {job.job_id} {job.status}: it stops at its next chunk boundary")


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
    if as_json:
        _print_json(found)
        return
    limit = found.get("maxRedemptionsPerCoupon")
    tills = found.get("allowedTillIds")
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
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
        ("created", found.get("createdAt")),
    ):
        table.add_row(label, _cell(value))
    _out().print(table)


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
