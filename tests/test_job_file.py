"""GET /v1/jobs/{id}/file: the file as it was uploaded, while it is kept."""

from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from core.models import UploadJob
from core.storage import get_storage
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series
from tests.helpers import MOBILE_HEADERS, refusal
from tests.test_jobs_api import revert_row

FORM = {
    "customerIdentifier": "MOBILE",
    "couponIdentifier": "COUPON_CODE",
    "uploadHeaders": json.dumps(MOBILE_HEADERS),
}


def post_job(
    client: TestClient, auth: dict[str, str], series: int, name: str, content: bytes
) -> int:
    answer = client.post(
        "/v1/jobs",
        params={"couponSeriesId": series},
        headers=auth,
        data=FORM,
        files={"file": (name, content, "application/octet-stream")},
    )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["jobId"])


def test_the_file_comes_back_byte_for_byte_with_its_name(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    # A BOM, CRLF and LF mixed, text that is not ASCII and no newline at the end: any decoding
    # or newline rewriting on the way back would show; and a few MiB, read in pieces.
    lines = [b"\xef\xbb\xbfdate,till,mobile,code,details\r\n"]
    lines += [
        f"{SAMPLE_MS},T{i},9988776655,C{i},caf\u00e9 {os.urandom(12).hex()}".encode()
        + (b"\r\n" if i % 2 else b"\n")
        for i in range(60_000)
    ]
    content = b"".join(lines).rstrip(b"\r\n")
    assert len(content) > 3 << 20
    name = "réd eem;ed.csv"
    job = post_job(client, auth, series, name, content)

    answer = client.get(f"/v1/jobs/{job}/file", headers=auth)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.content == content
    assert (
        hashlib.sha256(answer.content).hexdigest()
        == (client.get(f"/v1/jobs/{job}", headers=auth).json()["fileSha256"])
    )
    assert answer.headers["content-type"] == "application/octet-stream"
    disposition = answer.headers["content-disposition"]
    # A plain fallback without the accent, and the exact name in UTF-8.
    assert disposition == (
        f"attachment; filename=\"r_d eem;ed.csv\"; filename*=UTF-8''{quote(name, safe='')}"
    )


def test_a_purged_file_is_410_and_a_revert_has_none(
    client: TestClient, auth: dict[str, str], org: tuple[int, str]
) -> None:
    series = create_series(org[0])
    content = f"date,till,mobile,code\n{SAMPLE_MS},T1,9988776655,X\n".encode()
    purged, vanished, kept = (post_job(client, auth, series, "r.csv", content) for _ in range(3))
    with admin_transaction() as session:
        session.execute(
            update(UploadJob).where(UploadJob.id == purged).values(file_deleted_at=func.now())
        )
        lost_key = session.execute(
            select(UploadJob.storage_key).where(UploadJob.id == vanished)
        ).scalar_one()
    # Retention marks the job; a file gone from the store without the mark is gone as well.
    get_storage().delete(lost_key)
    for job in (purged, vanished):
        answer = client.get(f"/v1/jobs/{job}/file", headers=auth)
        assert answer.status_code == 410, answer.text
        status, message, _ = refusal(answer)
        assert status == 410 and "retention" in message
    assert client.get(f"/v1/jobs/{purged}", headers=auth).json()["links"]["file"] is None
    assert client.get(f"/v1/jobs/{kept}/file", headers=auth).content == content

    revert = revert_row(org[0], kept, "QUEUED")
    answer = client.get(f"/v1/jobs/{revert}/file", headers=auth)
    assert answer.status_code == 404, answer.text
    assert f"job {kept} has the file" in refusal(answer)[1]
