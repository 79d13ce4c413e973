"""Driving the API the way a client does: upload, poll, read the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"}
MOBILE_HEADERS = {"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}
# Every column a sample 2 file has, in its order.
ALL_COLUMNS_HEADERS = {
    **MOBILE_HEADERS,
    "billId": 4,
    "billNumber": 5,
    "details": 6,
}


def upload(
    client: TestClient,
    auth: dict[str, str],
    series_id: int,
    path: Path,
    upload_headers: dict[str, Any] | str,
    *,
    customer: str = "MOBILE",
    coupon: str = "COUPON_CODE",
    extra: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    form = {
        "customerIdentifier": customer,
        "couponIdentifier": coupon,
        "uploadHeaders": upload_headers
        if isinstance(upload_headers, str)
        else json.dumps(upload_headers),
        **(extra or {}),
    }
    with path.open("rb") as handle:
        return client.post(
            f"/coupon/api/v1/upload/redeemFile/{series_id}",
            headers={**auth, **(headers or {})},
            data=form,
            files={"file": (path.name, handle, "text/csv")},
        )


def job_id_of(response: Any) -> int:
    # Capillary's answer to redeemFile: HTTP 200 with the job in its result (DESIGN.md).
    assert response.status_code == 200, response.text
    return int(response.json()["result"]["redeemUploadJobStatuses"][0]["jobId"])


def wait_for_job(
    client: TestClient, auth: dict[str, str], job_id: int, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        if doc["status"] in TERMINAL:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not end in {timeout}s: {doc}")
        time.sleep(0.1)


def all_row_errors(client: TestClient, auth: dict[str, str], job_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.get(
            f"/v1/jobs/{job_id}/errors", params={"afterRow": after, "limit": 1000}, headers=auth
        ).json()
        items.extend(page["items"])
        if page["nextAfterRow"] is None:
            return items
        after = page["nextAfterRow"]


def refusal(response: Any) -> tuple[int, str, list[dict[str, str]]]:
    """A refusal's status, message and errors, held to its route's own shape (DESIGN.md):
    Capillary's on Capillary's routes (`status` the HTTP code, as a number), ours on /v1."""
    body: dict[str, Any] = response.json()
    assert body["success"] is False, body
    if response.request.url.path.startswith("/coupon/api/"):
        assert set(body) == {"success", "status", "message", "errors"}, body
        assert body["status"] == response.status_code, body
        return body["status"], body["message"], body["errors"]
    assert set(body) == {"success", "status", "errors"}, body
    assert body["status"] == {
        "success": False,
        "code": response.status_code,
        "message": body["status"]["message"],
    }, body
    return body["status"]["code"], body["status"]["message"], body["errors"]
