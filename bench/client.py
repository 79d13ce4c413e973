"""Talking to the service over HTTP as a client would: upload, poll, cancel, download the report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import datagen

TERMINAL = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED")


class ClientError(RuntimeError):
    """The service answered something the bench cannot go on with."""


@dataclass(frozen=True)
class Upload:
    job_id: int
    started: float  # perf_counter just before the first byte went out
    answered: float  # perf_counter when the answer (the job) had arrived
    started_wall: float  # time.time() at `started`, to compare with the job's timestamps
    size: int

    @property
    def seconds(self) -> float:
        return self.answered - self.started


@dataclass(frozen=True)
class Download:
    size: int
    lines: int
    seconds: float


class ServiceClient:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.http = httpx.Client(base_url=base_url, headers=self.headers, timeout=600.0)

    def close(self) -> None:
        self.http.close()

    def upload(self, path: Path, series_id: int) -> Upload:
        """POST the file as multipart; httpx streams a file object in 64 KiB pieces."""
        fields = {
            "customerIdentifier": datagen.CUSTOMER_IDENTIFIER,
            "couponIdentifier": datagen.COUPON_IDENTIFIER,
            "uploadHeaders": json.dumps(datagen.UPLOAD_HEADERS),
        }
        size = path.stat().st_size
        with path.open("rb") as handle:
            started_wall, started = time.time(), time.perf_counter()
            response = self.http.post(
                f"/coupon/api/v1/upload/redeemFile/{series_id}",
                data=fields,
                files={"file": (path.name, handle, "text/csv")},
            )
            answered = time.perf_counter()
        # Capillary's route, as Capillary's clients call it: HTTP 200 and the job in `result`.
        if response.status_code != 200:
            raise ClientError(f"upload answered {response.status_code}: {response.text[:2000]}")
        job_id = int(response.json()["result"]["redeemUploadJobStatuses"][0]["jobId"])
        return Upload(job_id, started, answered, started_wall, size)

    def job(self, job_id: int) -> dict[str, Any]:
        return _document(self.http.get(f"/v1/jobs/{job_id}"), "GET job")

    def wait_until_ended(
        self, job_id: int, *, interval: float = 0.2, timeout: float = 7200.0
    ) -> tuple[dict[str, Any], float]:
        """The job's final document and the perf_counter when its end was first seen."""
        deadline = time.monotonic() + timeout
        while True:
            document = self.job(job_id)
            if document["status"] in TERMINAL:
                return document, time.perf_counter()
            if time.monotonic() > deadline:
                raise ClientError(f"job {job_id} did not end within {timeout} s: {document}")
            time.sleep(interval)

    def cancel(self, job_id: int) -> dict[str, Any]:
        return _document(self.http.post(f"/v1/jobs/{job_id}/cancel"), "cancel")

    def download_errors_csv(self, job_id: int) -> Download:
        """Stream the whole errors CSV, keeping nothing but its size and line count."""
        size = lines = 0
        started = time.perf_counter()
        with self.http.stream("GET", f"/v1/jobs/{job_id}/errors.csv") as response:
            if response.status_code != 200:
                raise ClientError(f"errors.csv answered {response.status_code}")
            for piece in response.iter_raw():
                size += len(piece)
                lines += piece.count(b"\n")
        return Download(size, lines, time.perf_counter() - started)


def _document(response: httpx.Response, what: str) -> dict[str, Any]:
    """A 200's JSON document, or a ClientError quoting what came instead."""
    if response.status_code != 200:
        raise ClientError(f"{what} answered {response.status_code}: {response.text[:2000]}")
    document: dict[str, Any] = response.json()
    return document
