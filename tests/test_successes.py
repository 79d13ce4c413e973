"""The successes report: every applied row, its cells as uploaded and the redemption it made.

Each job runs on a real Celery worker. The successes and the errors of a job must partition its
data records; the files below between them make every row error code, which one series cannot:
716 needs a series that refuses a customer's second redemption of a coupon, 711 and 714 one
that allows it (or any user), and 711 a limit of 1 where 714 needs more.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import successes
from core.codes import PRECEDENCE, RowError
from core.reports import escape
from core.storage import get_storage
from core.successes import REPORT_COLUMNS
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series
from tests.helpers import ALL_COLUMNS_HEADERS, all_row_errors, job_id_of, upload, wait_for_job

HEADER_ROW = ["date", "till", "mobile", "code", "bill", "number", "details"]
ALICE = "9100000001"
BOB = "9100000002"
NOBODY = "9100000999"
R = RowError

pytestmark = pytest.mark.usefixtures("worker")


def ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def cells(
    *,
    date: object = SAMPLE_MS,
    till: str = "T1",
    mobile: str = ALICE,
    code: str = "A1",
    bill: str = "",
    number: str = "",
    details: str = "",
) -> list[str]:
    return [str(date), till, mobile, code, bill, number, details]


@dataclass(frozen=True)
class Line:
    """A line of the file and what it must come to: a code, applied (None) or blank."""

    content: list[str] | str  # cells (written as CSV) or a raw line
    outcome: RowError | str | None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(self.content)
        return out.getvalue()


BLANK = "blank"

# Series A refuses a second redemption by the same customer, limits a customer to 3 and its
# tills to T1, and starts in 2020: all the codes but 711 and 714.
STRICT = [
    Line(cells(bill="B1", number="N1", details=' spaced, "quoted" '), None),
    Line(f"{SAMPLE_MS},T1", R.MISSING_COLUMNS),
    Line(cells(till=""), R.MISSING_VALUE),
    Line(cells(till="T" * 101), R.VALUE_TOO_LONG),
    Line(cells(mobile="not-a-mobile"), R.INVALID_IDENTIFIER),
    Line(cells(date="1.60313E+12"), R.INVALID_REDEMPTION_DATE),
    Line(cells(mobile=NOBODY), R.CUSTOMER_NOT_FOUND),
    Line(cells(code="NOPE"), R.COUPON_NOT_FOUND),
    Line(cells(code="REV"), R.COUPON_REVOKED),
    Line(cells(code="BOBS"), R.COUPON_NOT_ISSUED_TO_CUSTOMER),
    Line(cells(date=ms(2019, 6, 1)), R.SERIES_NOT_VALID_ON_DATE),
    Line(cells(code="EXP"), R.COUPON_EXPIRED),
    Line(cells(till="T2"), R.TILL_NOT_ALLOWED),
    Line(cells(bill="B1", number="N1", details="again"), R.DUPLICATE_REDEMPTION),
    Line(cells(date=SAMPLE_MS + 1), R.SAME_USER_MULTIPLE_REDEEM_NOT_ALLOWED),
    Line(cells(code="A2", details="-2 formula-like"), None),
    Line("", BLANK),
    Line(cells(code="A3", till=" T1 ", details="@home"), None),
    Line(cells(code="A4"), R.CUSTOMER_SERIES_LIMIT_REACHED),
    Line(cells(code="BOBS", mobile=BOB, details="=1+1"), None),
    Line(f'{SAMPLE_MS},"T1', R.MALFORMED_ROW),  # a quote left open to the end of the file
]
# Series B: any user, single use: a coupon used once is used up.
SINGLE_USE = [
    Line(cells(code="S1"), None),
    Line(cells(code="S1", mobile=BOB, date=SAMPLE_MS + 1), R.COUPON_ALREADY_REDEEMED),
    Line(cells(code="S2", mobile=BOB), None),
]
# Series C: any user, twice per coupon.
TWICE = [
    Line(cells(code="M1"), None),
    Line(cells(code="M1", date=SAMPLE_MS + 1), None),
    Line(cells(code="M1", mobile=BOB, date=SAMPLE_MS + 2), R.REDEMPTION_LIMIT_REACHED),
    Line(cells(code="M2", mobile=BOB), None),
]


def write(path: Path, lines: list[Line], *, header: bool = True) -> Path:
    rows = ([",".join(HEADER_ROW)] if header else []) + [line.text for line in lines]
    path.write_bytes("\n".join(rows).encode())
    return path


def successes_json(client: TestClient, auth: dict[str, str], job_id: int) -> list[dict[str, Any]]:
    """Every page, two rows at a time, so that the keyset paging is crossed many times."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        answer = client.get(
            f"/v1/jobs/{job_id}/successes", params={"afterRow": after, "limit": 2}, headers=auth
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items.extend(page["items"])
        if page["nextAfterRow"] is None:
            return items
        after = page["nextAfterRow"]


def successes_csv(client: TestClient, auth: dict[str, str], job_id: int) -> list[list[str]]:
    answer = client.get(f"/v1/jobs/{job_id}/successes.csv", headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert f"-successes-{job_id}.csv" in answer.headers["content-disposition"]
    body = answer.content
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")  # CRLF only
    return list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def redemptions_of(job_id: int) -> list[tuple[int, int, int, int]]:
    """(row number, redemption id, coupon id, customer id) of the job's redemptions, by row."""
    with admin_transaction() as session:
        return [
            tuple(row)
            for row in session.execute(
                text(
                    "SELECT row_number, id, coupon_id, customer_id FROM redemptions"
                    " WHERE job_id = :j ORDER BY row_number"
                ),
                {"j": job_id},
            )
        ]


def run(
    client: TestClient, auth: dict[str, str], series: int, path: Path, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    job_id = job_id_of(upload(client, auth, series, path, ALL_COLUMNS_HEADERS, **kwargs))
    return job_id, wait_for_job(client, auth, job_id)


def check_partition(
    client: TestClient, auth: dict[str, str], series: int, path: Path, lines: list[Line]
) -> set[int]:
    """Run the file; check its successes against its lines, its errors and the table. The
    codes it made."""
    job_id, doc = run(client, auth, series, path)
    assert doc["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS"), doc
    numbered = {number: line for number, line in enumerate(lines, start=2)}
    data = {n for n, line in numbered.items() if line.outcome != BLANK}
    applied = {n for n, line in numbered.items() if line.outcome is None}

    errors = all_row_errors(client, auth, job_id)
    made = {e["rowNumber"]: e["errorCode"] for e in errors}
    assert made == {
        n: int(line.outcome) for n, line in numbered.items() if isinstance(line.outcome, RowError)
    }
    items = successes_json(client, auth, job_id)
    rows = [item["rowNumber"] for item in items]
    assert rows == sorted(applied)  # in file order, each once
    # Each data record in exactly one of the two reports, the counts those of the job.
    assert set(rows) | set(made) == data and not set(rows) & set(made)
    assert len(rows) == doc["progress"]["rowsSucceeded"]
    assert len(made) == doc["progress"]["rowsFailed"]
    assert len(data) == doc["progress"]["rowsProcessed"]

    table = redemptions_of(job_id)
    assert [(i["rowNumber"], i["redemptionId"], i["couponId"], i["userId"]) for i in items] == [
        *table
    ]
    assert all(item["revertedByJobId"] is None for item in items)
    # The pages carry each row's cells as uploaded (untrimmed, quotes and commas kept).
    assert [item["fields"] for item in items] == [numbered[n].content for n in rows]

    header, *report = successes_csv(client, auth, job_id)
    assert header == [*HEADER_ROW, *REPORT_COLUMNS]
    assert len(report) == len(table)
    for row, (number, redemption, coupon, user) in zip(report, table, strict=True):
        uploaded = numbered[number].content
        assert isinstance(uploaded, list)
        # The cells as uploaded (untrimmed, quotes and commas kept), with the report's escape.
        assert row[: len(HEADER_ROW)] == [escape(cell) for cell in uploaded]
        assert row[len(HEADER_ROW) :] == [str(number), str(redemption), str(coupon), str(user), ""]
    return set(made.values())


def test_successes_and_errors_partition_a_files_records_across_every_error_code(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    org_id = org[0]
    alice = create_customer(org_id, mobile=ALICE)
    bob = create_customer(org_id, mobile=BOB)

    strict = create_series(
        org_id,
        max_redemptions_per_customer=3,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        allowed_till_ids=["T1"],
    )
    for code in ("A1", "A2", "A3", "A4"):
        create_coupon(org_id, strict, code, issued_to=alice)
    create_coupon(org_id, strict, "BOBS", issued_to=bob)
    create_coupon(
        org_id, strict, "REV", issued_to=alice, revoked_at=datetime(2020, 1, 1, tzinfo=UTC)
    )
    create_coupon(
        org_id, strict, "EXP", issued_to=alice, expires_at=datetime(2020, 6, 1, tzinfo=UTC)
    )
    single = create_series(org_id, any_user=True)
    twice = create_series(
        org_id, any_user=True, same_user_multiple_redeem=True, max_redemptions_per_coupon=2
    )
    for series, codes in ((single, ("S1", "S2")), (twice, ("M1", "M2"))):
        for code in codes:
            create_coupon(org_id, series, code)

    made = check_partition(client, auth, strict, write(tmp_path / "a.csv", STRICT), STRICT)
    made |= check_partition(client, auth, single, write(tmp_path / "b.csv", SINGLE_USE), SINGLE_USE)
    made |= check_partition(client, auth, twice, write(tmp_path / "c.csv", TWICE), TWICE)
    assert made == {int(code) for code in PRECEDENCE}


@pytest.fixture
def applied_job(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> int:
    """A job over four rows of which three applied (rows 2, 3 and 5)."""
    org_id = org[0]
    create_customer(org_id, mobile=ALICE)
    series = create_series(org_id, any_user=True)
    for code in ("K1", "K2", "K3"):
        create_coupon(org_id, series, code)
    lines = [
        Line(cells(code="K1"), None),
        Line(cells(code="K2"), None),
        Line(cells(code="NOPE"), R.COUPON_NOT_FOUND),
        Line(cells(code="K3"), None),
    ]
    job_id, doc = run(client, auth, series, write(tmp_path / "k.csv", lines))
    assert doc["progress"]["rowsSucceeded"] == 3
    return job_id


def stand_in_revert(job_id: int, rows: list[int]) -> int:
    """What a revert's chunk commits, done by hand: a REVERT job of the import, and the given
    rows' redemptions moved to the archive with its id (the revert itself is another branch's;
    this report only reads what it leaves)."""
    with admin_transaction() as session:
        revert = session.execute(
            text(
                "INSERT INTO upload_jobs (org_id, series_id, status, kind, reverts_job_id,"
                " customer_identifier, coupon_identifier, upload_headers, delimiter, has_header,"
                " encoding, report_header, file_name, file_size, file_sha256, storage_key)"
                " SELECT org_id, series_id, 'COMPLETED', 'REVERT', id, customer_identifier,"
                " coupon_identifier, upload_headers, delimiter, has_header, encoding,"
                " report_header, file_name, file_size, file_sha256, ''"
                " FROM upload_jobs WHERE id = :j RETURNING id"
            ),
            {"j": job_id},
        ).scalar_one()
        session.execute(
            text(
                "WITH moved AS (DELETE FROM redemptions WHERE job_id = :j"
                " AND row_number = ANY(:rows) RETURNING *)"
                " INSERT INTO reverted_redemptions (id, org_id, series_id, coupon_id,"
                " customer_id, job_id, row_number, redeemed_ms, till_id, bill_id, bill_number,"
                " details, created_at, reverted_by_job_id)"
                " SELECT id, org_id, series_id, coupon_id, customer_id, job_id, row_number,"
                " redeemed_ms, till_id, bill_id, bill_number, details, created_at, :revert"
                " FROM moved"
            ),
            {"j": job_id, "rows": rows, "revert": revert},
        )
    return int(revert)


def test_reverted_rows_stay_listed_marked_and_are_the_reverts_own_successes(
    client: TestClient, auth: dict[str, str], applied_job: int
) -> None:
    before = successes_json(client, auth, applied_job)
    revert = stand_in_revert(applied_job, [2, 5])

    after = successes_json(client, auth, applied_job)
    # The same rows and ids, the archived ones marked with the revert.
    assert [{**i, "revertedByJobId": None} for i in after] == before
    assert [(i["rowNumber"], i["revertedByJobId"]) for i in after] == [
        (2, revert),
        (3, None),
        (5, revert),
    ]
    _, *report = successes_csv(client, auth, applied_job)
    assert [(row[-5], row[-1]) for row in report] == [
        ("2", str(revert)),
        ("3", ""),
        ("5", str(revert)),
    ]

    # The revert's own successes: what it removed, with the import's cells.
    removed = successes_json(client, auth, revert)
    assert [(i["rowNumber"], i["revertedByJobId"]) for i in removed] == [(2, revert), (5, revert)]
    header, *rows = successes_csv(client, auth, revert)
    assert header == [*HEADER_ROW, *REPORT_COLUMNS]
    assert [row[3] for row in rows] == ["K1", "K3"]
    assert [row[-1] for row in rows] == [str(revert), str(revert)]


def test_once_the_file_is_purged_the_rows_stay_and_their_cells_are_empty(
    client: TestClient, auth: dict[str, str], applied_job: int
) -> None:
    with admin_transaction() as session:
        key = session.execute(
            text("SELECT storage_key FROM upload_jobs WHERE id = :j"), {"j": applied_job}
        ).scalar_one()
    get_storage().delete(key)
    with admin_transaction() as session:  # what retention does once the blob is gone
        session.execute(text("SELECT br_files_purged(ARRAY[:j]::bigint[])"), {"j": applied_job})

    header, *rows = successes_csv(client, auth, applied_job)
    assert header == [*HEADER_ROW, *REPORT_COLUMNS]
    assert [row[: len(HEADER_ROW)] for row in rows] == [[""] * len(HEADER_ROW)] * 3
    assert [row[len(HEADER_ROW)] for row in rows] == ["2", "3", "5"]
    pages = successes_json(client, auth, applied_job)
    assert [(item["rowNumber"], item["fields"]) for item in pages] == [(2, []), (3, []), (5, [])]


def test_a_headerless_upload_gets_the_mapped_key_names(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    org_id = org[0]
    create_customer(org_id, mobile=ALICE)
    series = create_series(org_id, any_user=True)
    create_coupon(org_id, series, "H1")
    lines = [Line(cells(code="H1", details="d"), None)]
    job_id, _ = run(client, auth, series, write(tmp_path / "h.csv", lines, header=False))
    header, row = successes_csv(client, auth, job_id)
    assert header == [*ALL_COLUMNS_HEADERS, *REPORT_COLUMNS]
    assert row[:7] == cells(code="H1", details="d")
    assert row[7] == "1"  # no header: the first record is row 1


def test_a_job_with_nothing_applied_has_a_header_alone(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    series = create_series(org[0])
    job_id, _ = run(
        client,
        auth,
        series,
        write(tmp_path / "n.csv", [Line(cells(code="NOPE"), R.CUSTOMER_NOT_FOUND)]),
    )
    assert successes_csv(client, auth, job_id) == [[*HEADER_ROW, *REPORT_COLUMNS]]
    page = client.get(f"/v1/jobs/{job_id}/successes", headers=auth).json()
    assert page == {"items": [], "nextAfterRow": None}


@pytest.mark.parametrize("window", [1, 2, 3])
def test_pages_and_the_csv_are_the_same_whatever_the_window_of_record_numbers(
    client: TestClient,
    auth: dict[str, str],
    applied_job: int,
    monkeypatch: pytest.MonkeyPatch,
    window: int,
) -> None:
    # The statements look at WINDOW record numbers at a time (10,000): windows smaller than
    # the gaps between applied rows (row 4 failed) and than a page must change nothing.
    whole = (successes_json(client, auth, applied_job), successes_csv(client, auth, applied_job))
    monkeypatch.setattr(successes, "WINDOW", window)
    assert successes_json(client, auth, applied_job) == whole[0]
    assert successes_csv(client, auth, applied_job) == whole[1]
    assert [item["rowNumber"] for item in whole[0]] == [2, 3, 5]
