"""The service's HTTP API as the CLI uses it; every failure is a `ClientError`.

Everything goes through the API (never the database), so the CLI works against any
deployment the user has a key for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from cli.client.documents import DemoLoaded, Job, JobPage, Preview
from core.uploads.preview import PREVIEW_BYTES

# What `bulkredeem demo` loads (DESIGN.md, Demo data); the ids are whatever the service assigns.
DEMO_SERIES = "demo"
DEMO_VALID_FROM = "2020-01-01T00:00:00"
DEMO_MOBILE = "9988776655"
DEMO_COUPON_CODES = ("DEMO23456", "ABCDEF1")
PREVIEW_PATH = "/v1/uploads/preview"


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
        max_error_rate: str | None = None,
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
        if max_error_rate is not None:
            fields["maxErrorRate"] = max_error_rate  # as typed: the service judges it
        # The service answers an unknown series before it reads the body, and closes the
        # connection on a client still sending: ask first, so a big file fails with a reason.
        self.series(series_id)
        path_of_upload = "/v1/jobs"
        try:
            with path.open("rb") as handle:
                body = self._json(
                    "POST",
                    path_of_upload,
                    params={"couponSeriesId": series_id},
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
            return int(body["jobId"])

    def preview(
        self,
        path: Path,
        series_id: int,
        *,
        customer_identifier: str,
        coupon_identifier: str,
        upload_headers: str | None,
    ) -> Preview:
        """What the service would read of the file's start, judged; nothing is stored."""
        fields = {
            "customerIdentifier": customer_identifier,
            "couponIdentifier": coupon_identifier,
        }
        if upload_headers is not None:
            fields["uploadHeaders"] = upload_headers
        try:
            with path.open("rb") as handle:
                # The service reads no further: the rest of a big file need not travel.
                head = handle.read(PREVIEW_BYTES)
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from None
        # httpx writes the fields before the file, which the service reads last.
        body = self._json(
            "POST",
            PREVIEW_PATH,
            params={"couponSeriesId": series_id},
            data=fields,
            files={"file": (path.name, head, "text/csv")},
        )
        with self._shape(PREVIEW_PATH):
            return Preview.from_json(body)

    def job(self, job_id: int) -> Job:
        path = f"/v1/jobs/{job_id}"
        body = self._json("GET", path)
        with self._shape(path):
            return Job.from_json(body)

    def jobs(
        self, *, series_id: int | None = None, status: str | None = None, limit: int = 20
    ) -> JobPage:
        """The org's jobs, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if series_id is not None:
            params["couponSeriesId"] = series_id
        if status is not None:
            params["status"] = status
        body = self._json("GET", "/v1/jobs", params=params)
        with self._shape("/v1/jobs"):
            return JobPage(
                [Job.from_json(item) for item in body["items"]], body.get("nextCursor"), body
            )

    def cancel(self, job_id: int) -> Job:
        path = f"/v1/jobs/{job_id}/cancel"
        body = self._json("POST", path)
        with self._shape(path):
            return Job.from_json(body)

    def revert(self, job_id: int) -> Job:
        """Ask for the import's revert: the revert job (202), or a ClientError saying why not."""
        path = f"/v1/jobs/{job_id}/revert"
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

    # The org's settings.

    def org(self) -> dict[str, Any]:
        return self._json("GET", "/v1/org")

    def change_org(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Set the settings in `changes` (None clears one); all of them, as they now are."""
        return self._json("PATCH", "/v1/org", json=dict(changes))

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
