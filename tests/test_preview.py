"""POST /v1/uploads/preview against the real app and Postgres: what an upload would do, with
nothing stored."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from core import keys
from core.db import admin_transaction
from core.settings import get_settings
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series
from tests.processes import api as start_api
from tests.processes import service_env

pytestmark = pytest.mark.timeout(120)

ALICE = "9000000001"
NOBODY = "9000000999"
HEADER = "Redeemed Date,Till,Mobile No,Coupon Code"
SUGGESTED = {"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}
IDENTIFIERS = {"customerIdentifier": "MOBILE", "couponIdentifier": "COUPON_CODE"}


@dataclass
class Shop:
    series: int
    alice: int
    fresh: str  # a coupon issued to Alice, never redeemed
    used: str  # one issued to Alice and redeemed once, by Bob (the series allows one)


@pytest.fixture
def shop(org: tuple[int, str], database_url: str) -> Shop:
    org_id = org[0]
    series = create_series(org_id)
    alice = create_customer(org_id, mobile=ALICE)
    create_coupon(org_id, series, "FRESH", issued_to=alice)
    bob = create_customer(org_id, mobile="9000000002")
    used = create_coupon(org_id, series, "USED", issued_to=alice)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO redemptions (org_id, series_id, coupon_id, customer_id, redeemed_ms,"
            " till_id) VALUES (%s, %s, %s, %s, %s, 'T0')",
            (org_id, series, used, bob, SAMPLE_MS - 1000),
        )
        conn.execute(
            "INSERT INTO coupon_counters (coupon_id, org_id, redemption_count) VALUES (%s, %s, 1)",
            (used, org_id),
        )
    return Shop(series, alice, "FRESH", "USED")


def csv_of(*rows: str, header: str | None = HEADER) -> bytes:
    lines = ([header] if header is not None else []) + list(rows)
    return ("\n".join(lines) + "\n").encode()


def line(code: str, mobile: str = ALICE, *, ms: int = SAMPLE_MS, till: str = "T1") -> str:
    return f"{ms},{till},{mobile},{code}"


def preview(
    client: TestClient,
    auth: dict[str, str],
    content: bytes | None,
    *,
    series: int | None = None,
    fields: dict[str, str] | None = None,
    file_field: str = "file",
) -> Any:
    params = {} if series is None else {"couponSeriesId": series}
    files = None if content is None else {file_field: ("r.csv", content, "text/csv")}
    return client.post(
        "/v1/uploads/preview", headers=auth, params=params, data=fields or {}, files=files
    )


def verdicts(body: dict[str, Any]) -> list[tuple[int, int | None]]:
    return [(r["rowNumber"], r["errorCode"]) for r in body["records"]]


def test_a_header_file_gets_the_suggested_mapping_and_its_first_records_judged_by_it(
    client: TestClient, auth: dict[str, str], shop: Shop
) -> None:
    content = csv_of(line("FRESH"), line("NOPE"), line("FRESH", NOBODY), line(shop.used))
    answer = preview(client, auth, content, series=shop.series, fields=IDENTIFIERS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("format", "encoding", "delimiter", "hasHeader")} == {
        "format": "csv",
        "encoding": "utf-8",
        "delimiter": ",",
        "hasHeader": True,
    }
    assert body["header"] == HEADER.split(",")
    assert body["suggestedUploadHeaders"] == SUGGESTED
    assert body["requiredKeys"] == ["mobile", "couponCode", "redeemedDateInMillis", "redeemedAt"]
    assert body["missingKeys"] == []
    # As a real run: the customer and coupon looked up, the coupon's one redemption used.
    assert verdicts(body) == [(2, None), (3, 702), (4, 701), (5, 711)]
    first = body["records"][0]
    assert first == {
        "rowNumber": 2,
        "values": {
            "redeemedDateInMillis": str(SAMPLE_MS),
            "redeemedAt": "T1",
            "mobile": ALICE,
            "couponCode": "FRESH",
        },
        "errorCode": None,
        "errorName": None,
        "errorMessage": None,
    }
    assert body["records"][3]["errorName"] == "COUPON_ALREADY_REDEEMED"
    assert body["records"][1]["errorMessage"] == (
        f"no coupon with code 'NOPE' in series {shop.series}"
    )


def test_a_swapped_mapping_shows_the_row_errors_a_run_would_give(
    client: TestClient, auth: dict[str, str], shop: Shop
) -> None:
    swapped = {**SUGGESTED, "mobile": 3, "couponCode": 2}
    answer = preview(
        client,
        auth,
        csv_of(line("FRESH"), line("USED")),
        series=shop.series,
        fields={**IDENTIFIERS, "uploadHeaders": json.dumps(swapped)},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["suggestedUploadHeaders"] == SUGGESTED  # the suggestion is still the header's
    assert verdicts(body) == [(2, 805), (3, 805)]
    assert body["records"][0]["values"]["mobile"] == "FRESH"
    assert "mobile 'FRESH'" in body["records"][0]["errorMessage"]


def test_limits_are_read_as_they_stand_with_earlier_records_of_the_file_counting(
    client: TestClient, auth: dict[str, str], shop: Shop
) -> None:
    # FRESH twice: the second is what a run would refuse after the first (file order).
    content = csv_of(line("FRESH"), line("FRESH", ms=SAMPLE_MS + 1), line("FRESH", till="T2"))
    body = preview(client, auth, content, series=shop.series, fields=IDENTIFIERS).json()
    assert verdicts(body) == [(2, None), (3, 716), (4, 716)]


def test_without_a_series_only_the_row_checks_judge(
    client: TestClient, auth: dict[str, str]
) -> None:
    content = csv_of(line("ANY", NOBODY), line("ANY", "12"), f"{SAMPLE_MS},,{ALICE},X")
    body = preview(client, auth, content, fields=IDENTIFIERS).json()
    assert body["couponSeriesId"] is None
    assert verdicts(body) == [(2, None), (3, 805), (4, 802)]


def test_identifiers_not_sent_follow_the_mapping_and_decide_the_required_keys(
    client: TestClient, auth: dict[str, str]
) -> None:
    header = "redeemedDateInMillis,redeemedAt,userId,couponId"
    body = preview(client, auth, csv_of(f"{SAMPLE_MS},T1,5,6", header=header)).json()
    assert (body["customerIdentifier"], body["couponIdentifier"]) == ("USER_ID", "COUPON_ID")
    assert body["requiredKeys"] == ["userId", "couponId", "redeemedDateInMillis", "redeemedAt"]
    assert verdicts(body) == [(2, None)]


def test_a_header_that_names_no_mandatory_column_leaves_the_records_unjudged(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = preview(
        client, auth, csv_of("a,b,c", "d,e,f", header="Date,Mobile,Code"), fields=IDENTIFIERS
    ).json()
    assert body["hasHeader"] is True
    assert body["suggestedUploadHeaders"] == {"mobile": 1, "couponCode": 2}
    assert body["missingKeys"] == ["redeemedDateInMillis", "redeemedAt"]
    assert verdicts(body) == [(2, None), (3, None)]
    assert body["records"][0]["errorMessage"] == (
        "not judged: the mapping lacks redeemedDateInMillis, redeemedAt"
    )
    assert body["records"][0]["values"] == {"mobile": "b", "couponCode": "c"}


def test_a_file_without_a_header_gets_no_suggestion_and_column_names(
    client: TestClient, auth: dict[str, str]
) -> None:
    content = csv_of(f"{SAMPLE_MS};T1;{ALICE};X", header=None)
    body = preview(client, auth, content, fields=IDENTIFIERS).json()
    assert (body["hasHeader"], body["delimiter"]) == (False, ";")
    assert body["suggestedUploadHeaders"] == {}
    assert body["header"] == ["column0", "column1", "column2", "column3"]
    headers = {**IDENTIFIERS, "uploadHeaders": json.dumps(SUGGESTED)}
    body = preview(client, auth, content, fields=headers).json()
    assert body["header"] == ["redeemedDateInMillis", "redeemedAt", "mobile", "couponCode"]
    assert verdicts(body) == [(1, None)]


def counts(database_url: str, org_id: int) -> dict[str, int]:
    tables = ("redemptions", "upload_jobs", "job_row_errors", "dry_run_redemptions")
    with psycopg.connect(database_url) as conn:
        found = {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE org_id = %s", (org_id,)
            ).fetchone()[0]  # type: ignore[index]
            for table in tables
        }
        found["coupon_counters"] = conn.execute(
            "SELECT coalesce(sum(redemption_count), 0) FROM coupon_counters WHERE org_id = %s",
            (org_id,),
        ).fetchone()[0]  # type: ignore[index]
    return found


def stored_files() -> list[Path]:
    root = Path(urlsplit(get_settings().storage_url).path)
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_a_preview_writes_nothing_and_stores_nothing(
    client: TestClient, auth: dict[str, str], shop: Shop, org: tuple[int, str], database_url: str
) -> None:
    before, files = counts(database_url, org[0]), stored_files()
    content = csv_of(line("FRESH"), line("NOPE"), line(shop.used))
    for fields in (IDENTIFIERS, {**IDENTIFIERS, "dryRun": "true"}):
        answer = preview(client, auth, content, series=shop.series, fields=fields)
        assert verdicts(answer.json()) == [(2, None), (3, 702), (4, 711)]
    assert counts(database_url, org[0]) == before
    assert before["redemptions"] == 1  # the fixture's, which the checks did see
    assert stored_files() == files
    # The coupon the preview accepted is still redeemable: a second preview says the same.
    answer = preview(client, auth, csv_of(line("FRESH")), series=shop.series, fields=IDENTIFIERS)
    assert verdicts(answer.json()) == [(2, None)]


def big_file(size: int) -> bytes:
    rows = [line("FRESH", ms=SAMPLE_MS + i) for i in range(size // 30)]
    return csv_of(*rows)


def test_a_5_mb_file_is_answered_from_its_start_and_not_stored(
    client: TestClient, auth: dict[str, str], shop: Shop, org: tuple[int, str], database_url: str
) -> None:
    content = big_file(5 << 20)
    assert len(content) > 5_000_000
    files, before = stored_files(), counts(database_url, org[0])
    answer = preview(client, auth, content, series=shop.series, fields=IDENTIFIERS)
    assert answer.status_code == 200, answer.text
    assert verdicts(answer.json()) == [(2, None), (3, 716), (4, 716), (5, 716), (6, 716)]
    assert stored_files() == files
    assert counts(database_url, org[0]) == before


def test_a_file_cut_short_within_its_first_records_leaves_its_last_record_out(
    client: TestClient, auth: dict[str, str]
) -> None:
    # Three records, the third so long that the 256 KiB end inside it: a real run reads it
    # whole, the preview cannot, so it says nothing of it.
    long_till = "T" * (300 * 1024)
    content = csv_of(line("A"), line("B"), line("C", till=long_till))
    body = preview(client, auth, content, fields=IDENTIFIERS).json()
    assert verdicts(body) == [(2, None), (3, None)]


@pytest.fixture(scope="module")
def api_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_api(service_env(), tmp_path_factory.mktemp("api") / "api.log")
    try:
        yield url
    finally:
        process.stop()


def test_the_service_answers_before_the_rest_of_a_large_body_is_sent(
    api_url: str, database_url: str
) -> None:
    with admin_transaction() as session:
        _, issued = keys.create_org(session, f"test-{uuid.uuid4().hex[:12]}")
    boundary = "preview-boundary"
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in IDENTIFIERS.items()
    )
    file_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    content = big_file(1 << 20)
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(fields) + len(file_head) + len(content) + len(tail)
    host = urlsplit(api_url)
    request = (
        f"POST /v1/uploads/preview HTTP/1.1\r\nHost: {host.netloc}\r\n"
        f"Authorization: Bearer {issued.key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    with socket.create_connection((host.hostname, host.port), timeout=30) as sock:
        # The fields, then 300 KiB of the file's 1 MiB, and no more: an answer that waited for
        # the whole body would never come.
        sock.sendall(request + fields + file_head + content[: 300 * 1024])
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK", received
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert [r["rowNumber"] for r in body["records"]] == [2, 3, 4, 5, 6]


def test_another_orgs_series_is_not_found(
    client: TestClient, auth: dict[str, str], shop: Shop
) -> None:
    with admin_transaction() as session:
        other, _ = keys.create_org(session, f"test-{uuid.uuid4().hex[:12]}")
    theirs = create_series(other.id)
    for series in (theirs, 9_000_000_000):
        answer = preview(client, auth, csv_of(line("FRESH")), series=series, fields=IDENTIFIERS)
        assert answer.status_code == 404, answer.text
        assert answer.json()["status"]["code"] == 404


@pytest.mark.parametrize(
    ("content", "fields", "file_field", "status", "field"),
    [
        (None, IDENTIFIERS, "file", 400, "file"),
        (b"", IDENTIFIERS, "file", 400, "file"),
        (b"a,b\n", IDENTIFIERS, "other", 400, "other"),
        (b"\n\n\n", IDENTIFIERS, "file", 400, "file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, IDENTIFIERS, "file", 415, "file"),
        (b"PK\x03\x04" + b"\x00" * 64, IDENTIFIERS, "file", 415, "file"),
        (csv_of(line("X")), {"customerIdentifier": "PHONE"}, "file", 400, "customerIdentifier"),
        (csv_of(line("X")), {"delimiter": "#"}, "file", 400, "delimiter"),
        (csv_of(line("X")), {"hasHeader": "maybe"}, "file", 400, "hasHeader"),
        (csv_of(line("X")), {"uploadHeaders": "{"}, "file", 400, "uploadHeaders"),
        (csv_of(line("X")), {"uploadHeaders": '{"mobile": 2}'}, "file", 400, "uploadHeaders"),
        (
            csv_of(line("X")),
            {"uploadHeaders": json.dumps({**SUGGESTED, "mobile": "Phone"})},
            "file",
            400,
            "uploadHeaders",
        ),
    ],
    ids=[
        "no file",
        "empty file",
        "file under another name",
        "blank lines only",
        "png",
        "zip",
        "unknown enum",
        "unknown delimiter",
        "hasHeader not a boolean",
        "uploadHeaders not json",
        "uploadHeaders lacking keys",
        "uploadHeaders naming a missing column",
    ],
)
def test_a_bad_request_is_refused_as_the_upload_refuses_it(
    client: TestClient,
    auth: dict[str, str],
    content: bytes | None,
    fields: dict[str, str],
    file_field: str,
    status: int,
    field: str,
) -> None:
    answer = preview(client, auth, content, fields=fields, file_field=file_field)
    assert answer.status_code == status, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == [field]


def test_a_body_that_is_not_multipart_is_refused_naming_the_file(
    client: TestClient, auth: dict[str, str]
) -> None:
    answer = client.post(
        "/v1/uploads/preview",
        headers={**auth, "Content-Type": "text/csv"},
        content=csv_of(line("X")),
    )
    assert answer.status_code == 400, answer.text
    assert [error["field"] for error in answer.json()["errors"]] == ["file"]


def test_a_preview_does_not_wait_for_a_job_holding_the_series_lock(
    client: TestClient, auth: dict[str, str], shop: Shop, database_url: str
) -> None:
    answers: list[Any] = []
    with psycopg.connect(database_url) as holder:
        # What a chunk of a running job holds until it commits (core/apply.py _LOCK_SERIES).
        holder.execute(
            "SELECT 1 FROM coupon_series WHERE id = %s FOR NO KEY UPDATE", (shop.series,)
        )
        thread = threading.Thread(
            target=lambda: answers.append(
                preview(client, auth, csv_of(line("FRESH")), series=shop.series, fields=IDENTIFIERS)
            ),
            daemon=True,
        )
        thread.start()
        thread.join(timeout=20)
        assert answers, "the preview waited for the series lock"
        holder.rollback()
    assert verdicts(answers[0].json()) == [(2, None)]


def test_a_request_without_a_key_is_refused(client: TestClient) -> None:
    answer = client.post("/v1/uploads/preview", files={"file": ("r.csv", b"a\n", "text/csv")})
    assert answer.status_code == 401
