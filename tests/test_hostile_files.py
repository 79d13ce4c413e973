"""Hostile and messy files through the real API and a real worker.

Each file ends in a clear row error (its code at its row number) or a clear 4xx, the rest of
the file is applied, no answer is a 5xx and no job is left behind in a non-terminal status.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.csvstream import detect_delimiter
from core.db import transaction
from core.settings import get_settings
from tests.factories import SAMPLE_MS, create_coupon, create_customer, create_series
from tests.foreign_files import FOREIGN, Foreign
from tests.helpers import MOBILE_HEADERS, TERMINAL, all_row_errors, refusal, upload

pytestmark = pytest.mark.usefixtures("worker")

# A job of a few rows takes well under a second; longer than this is a stuck job.
JOB_TIMEOUT = 30.0
HEADER = "date,till,mobile,code"
HEADER_WITH_NOTE = "date,till,mobile,code,note"
MB10 = 10 * 1024 * 1024


class Shop:
    """A series of the test's own org, with one customer per coupon and the coupon issued to it."""

    def __init__(self, org_id: int, codes: Sequence[str]) -> None:
        self.org_id = org_id
        self.series = create_series(org_id, name="hostile")
        base = 7_200_000_000 + org_id * 1000
        self.mobile: dict[str, str] = {}
        for i, code in enumerate(codes):
            mobile = str(base + i)
            create_coupon(
                org_id, self.series, code, issued_to=create_customer(org_id, mobile=mobile)
            )
            self.mobile[code] = mobile

    def cells(self, code: str, *more: str, mobile: str | None = None) -> list[str]:
        """A redemption of `code` by the customer it is issued to (`mobile` to override)."""
        who = mobile if mobile is not None else self.mobile.get(code, self.stranger)
        return [str(SAMPLE_MS), "T1", who, code, *more]

    @property
    def stranger(self) -> str:
        """A known customer's mobile for rows whose coupon is unknown: they fail on the coupon."""
        return next(iter(self.mobile.values()))


def csv_line(cells: Sequence[str], delimiter: str = ",") -> str:
    return delimiter.join(cells)


def worker_log() -> str:
    path = (
        Path(os.environ.get("PYTEST_WORKER_LOG", "/tmp")) / f"bulkredeem-worker-{os.getpid()}.log"
    )
    return path.read_text(errors="replace") if path.exists() else ""


def submit(
    client: TestClient,
    auth: dict[str, str],
    series: int,
    tmp_path: Path,
    content: bytes,
    *,
    name: str = "hostile.csv",
    extra: dict[str, str] | None = None,
) -> Any:
    path = tmp_path / name
    path.write_bytes(content)
    return upload(client, auth, series, path, MOBILE_HEADERS, extra=extra)


def run_job(
    client: TestClient,
    auth: dict[str, str],
    series: int,
    tmp_path: Path,
    content: bytes,
    *,
    extra: dict[str, str] | None = None,
) -> int:
    """Upload (accepted) and wait for a terminal status; the worker must not have crashed."""
    response = submit(client, auth, series, tmp_path, content, extra=extra)
    assert response.status_code == 200, response.text
    job_id = int(response.json()["result"]["redeemUploadJobStatuses"][0]["jobId"])
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        answer = client.get(f"/v1/jobs/{job_id}", headers=auth)
        assert answer.status_code == 200, answer.text
        if answer.json()["status"] in TERMINAL:
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"job {job_id} stuck in {answer.json()['status']} after {JOB_TIMEOUT}s\n"
                f"worker log tail:\n{worker_log()[-4000:]}"
            )
        time.sleep(0.05)
    assert f"job {job_id}: slice failed" not in worker_log(), worker_log()[-4000:]
    return job_id


def redeemed_by_row(org_id: int, job_id: int) -> dict[int, str]:
    """The job's redemptions in the database: row number -> code of the coupon redeemed."""
    with transaction(org_id) as session:
        rows = session.execute(
            text(
                """
                SELECT r.row_number, k.code FROM redemptions r JOIN coupons k ON k.id = r.coupon_id
                WHERE r.job_id = :job
                """
            ),
            {"job": job_id},
        ).all()
    return {int(row[0]): str(row[1]) for row in rows}


def assert_outcome(
    client: TestClient,
    auth: dict[str, str],
    org_id: int,
    job_id: int,
    *,
    failed: dict[int, int],
    redeemed: dict[int, str],
) -> list[dict[str, Any]]:
    """Exact counts, row errors (row -> code) and redemptions (row -> coupon code) of a job."""
    doc = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
    assert doc["status"] == ("COMPLETED_WITH_ERRORS" if failed else "COMPLETED"), doc
    assert doc["failureReason"] is None, doc
    progress = doc["progress"]
    assert (progress["rowsProcessed"], progress["rowsSucceeded"], progress["rowsFailed"]) == (
        len(failed) + len(redeemed),
        len(redeemed),
        len(failed),
    ), doc
    assert {s["code"]: s["count"] for s in doc["errorSummary"]} == dict(Counter(failed.values()))
    errors = all_row_errors(client, auth, job_id)
    assert [(e["rowNumber"], e["errorCode"]) for e in errors] == sorted(failed.items()), errors
    assert redeemed_by_row(org_id, job_id) == redeemed
    return errors


def errors_csv(
    client: TestClient, auth: dict[str, str], job_id: int
) -> tuple[bytes, list[list[str]]]:
    response = client.get(f"/v1/jobs/{job_id}/errors.csv", headers=auth)
    assert response.status_code == 200, response.text[:500]
    return response.content, list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def assert_refused(response: Any, status: int, field: str, word: str) -> None:
    assert response.status_code == status, response.text[:500]
    code, message, errors = refusal(response)
    assert code == status
    assert word.lower() in message.lower(), message
    assert [e["field"] for e in errors] == [field], errors


def assert_no_job(client: TestClient, auth: dict[str, str], series: int) -> None:
    answer = client.get("/v1/jobs", params={"couponSeriesId": series}, headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []


def stored_files() -> list[Path]:
    root = Path(get_settings().storage_url.removeprefix("file://"))
    return sorted(p for p in root.rglob("*") if p.is_file())


# Encodings --------------------------------------------------------------------------------

NON_ASCII_CODES = ["CAFÉ-1", "ZÜRICH-2", "東京-3", "🎁-4"]


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
    ids=["utf-8-bom", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_file_with_a_bom_redeems_and_non_ascii_codes_and_names_survive(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    encoding: str,
    bom: bytes,
) -> None:
    shop = Shop(org[0], NON_ASCII_CODES)
    lines = [
        "fecha,caja,móvil,código",  # 1
        csv_line(shop.cells("CAFÉ-1")),  # 2
        csv_line(shop.cells("ZÜRICH-2")),  # 3
        csv_line(shop.cells("NÖPE-ß")),  # 4: 702, the unknown code kept as sent
        csv_line(shop.cells("東京-3")),  # 5
        csv_line(shop.cells("🎁-4")),  # 6
    ]
    content = bom + "\r\n".join(lines).encode(encoding) + "\r\n".encode(encoding)

    job = run_job(client, auth, shop.series, tmp_path, content)

    errors = assert_outcome(
        client,
        auth,
        shop.org_id,
        job,
        failed={4: 702},
        redeemed={2: "CAFÉ-1", 3: "ZÜRICH-2", 5: "東京-3", 6: "🎁-4"},
    )
    assert errors[0]["fields"] == shop.cells("NÖPE-ß")
    _, report = errors_csv(client, auth, job)
    # The BOM is not part of the first header cell, and the names come back as sent.
    assert report[0][:4] == ["fecha", "caja", "móvil", "código"]
    assert report[1][3] == "NÖPE-ß"


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
    ids=["utf-8-bom", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_headerless_file_with_a_bom_applies_its_first_row(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    encoding: str,
    bom: bytes,
) -> None:
    # The date cell right after the BOM: were the BOM kept, row 1 would be a header or a 729.
    shop = Shop(org[0], NON_ASCII_CODES[:2])
    lines = [
        csv_line(shop.cells("CAFÉ-1")),  # 1
        csv_line(shop.cells("NÖPE-ß")),  # 2: 702
        csv_line(shop.cells("ZÜRICH-2")),  # 3
    ]
    content = bom + ("\r\n".join(lines) + "\r\n").encode(encoding)

    job = run_job(client, auth, shop.series, tmp_path, content)

    assert_outcome(
        client, auth, shop.org_id, job, failed={2: 702}, redeemed={1: "CAFÉ-1", 3: "ZÜRICH-2"}
    )
    _, report = errors_csv(client, auth, job)
    assert report[0] == [*MOBILE_HEADERS, "rowNumber", "errorCode", "errorName", "errorMessage"]


def test_windows_1252_bytes_in_a_utf8_file_fail_only_their_rows(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["CAFÉ-1", "CAFÉ-2", "CAFÉ-3", "CAFÉ-4"])

    def line(cells: list[str], encoding: str = "utf-8") -> bytes:
        return csv_line(cells).encode(encoding) + b"\n"

    content = b"".join(
        [
            line(HEADER_WITH_NOTE.split(",")),  # 1
            line(shop.cells("CAFÉ-1", "“fragile”")),  # 2: UTF-8, fine
            line(shop.cells("CAFÉ-2", ""), "cp1252"),  # 3: É as the byte 0xC9: 807
            line(shop.cells("CAFÉ-3", "ok")),  # 4
            line(shop.cells("CAFÉ-4", "“fragile”"), "cp1252"),  # 5: 0x93/0x94 in an unmapped cell
        ]
    )

    job = run_job(client, auth, shop.series, tmp_path, content)

    errors = assert_outcome(
        client,
        auth,
        shop.org_id,
        job,
        failed={3: 807, 5: 807},
        redeemed={2: "CAFÉ-1", 4: "CAFÉ-3"},
    )
    assert {e["errorName"] for e in errors} == {"MALFORMED_ROW"}


# Delimiters -------------------------------------------------------------------------------

# A first record with as many commas as the real delimiter: detection ties and picks the comma,
# which still gives four columns, so only the explicit field reads the file right.
TIED_HEADER = {
    ";": "date, ms;till;mobile, digits;code, exact;note, free",
    "\t": "date, ms\ttill\tmobile, digits\tcode, exact\tnote, free",
}


@pytest.mark.parametrize(
    ("delimiter", "given"),
    [(";", None), (";", ";"), ("\t", None), ("\t", "tab"), ("\t", "\t")],
    ids=[
        "semicolon-detected",
        "semicolon-given",
        "tab-detected",
        "tab-given-as-name",
        "tab-given-as-char",
    ],
)
def test_semicolon_and_tab_files_are_read_with_their_delimiter(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    delimiter: str,
    given: str | None,
) -> None:
    shop = Shop(org[0], ["A1", "A2"])
    if given is None:
        header = csv_line(HEADER_WITH_NOTE.split(","), delimiter)
    else:
        header = TIED_HEADER[delimiter]
        assert detect_delimiter(header + "\n") == ","  # why the field is needed here
    note = "1,5 kg; fragile" if delimiter == "\t" else "1,5 kg"
    lines = [
        header,  # 1
        csv_line(shop.cells("A1", note), delimiter),  # 2
        csv_line(shop.cells("NOPE", note), delimiter),  # 3: 702
        csv_line(shop.cells("A2", note), delimiter),  # 4
    ]
    extra = {"delimiter": given} if given is not None else None

    job = run_job(
        client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode(), extra=extra
    )

    errors = assert_outcome(
        client, auth, shop.org_id, job, failed={3: 702}, redeemed={2: "A1", 4: "A2"}
    )
    assert errors[0]["fields"] == shop.cells("NOPE", note)


# Line ends and blank lines ----------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["CRLF", "CR-only"])
def test_crlf_and_cr_only_line_ends_give_the_same_rows(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path, newline: str
) -> None:
    shop = Shop(org[0], ["L1", "L2"])
    quoted_note = f'"two{newline}lines"'  # one record over two physical lines
    lines = [
        HEADER_WITH_NOTE,  # 1
        csv_line(shop.cells("L1", quoted_note)),  # 2
        "",  # 3: blank
        csv_line(shop.cells("NOPE", "x")),  # 4: 702
        csv_line(shop.cells("L2", "y")),  # 5
    ]

    job = run_job(client, auth, shop.series, tmp_path, (newline.join(lines) + newline).encode())

    assert_outcome(client, auth, shop.org_id, job, failed={4: 702}, redeemed={2: "L1", 5: "L2"})


def test_blank_lines_are_skipped_but_keep_their_row_numbers(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["B1", "B2"])
    lines = [
        "",  # 1
        "",  # 2
        HEADER,  # 3: the header is the first non-blank record
        csv_line(shop.cells("B1")),  # 4
        "   ",  # 5: only spaces
        "",  # 6
        csv_line(shop.cells("NOPE")),  # 7: 702
        "\t",  # 8: only a tab
        csv_line(shop.cells("B2")),  # 9
        "",  # 10
        "",  # 11
    ]

    job = run_job(client, auth, shop.series, tmp_path, "\n".join(lines).encode())

    assert_outcome(client, auth, shop.org_id, job, failed={7: 702}, redeemed={4: "B1", 9: "B2"})


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_last_line_without_a_newline_is_applied(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path, newline: str
) -> None:
    shop = Shop(org[0], ["E1", "E2"])
    last = shop.cells("E2")
    last[3] = '"E2"'  # a quote closed by the end of the file is not an open quote
    lines = [HEADER, csv_line(shop.cells("E1")), csv_line(shop.cells("NOPE")), csv_line(last)]

    job = run_job(client, auth, shop.series, tmp_path, newline.join(lines).encode())

    assert_outcome(client, auth, shop.org_id, job, failed={3: 702}, redeemed={2: "E1", 4: "E2"})


# Excel damage -----------------------------------------------------------------------------


def test_mobiles_and_dates_in_scientific_notation_are_refused_not_guessed(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["S1", "S2", "S3", "S4", "S5"])
    s5 = shop.cells("S5")
    s5[0] = "1.60313E+12"  # the date as Excel saves a 13-digit number
    lines = [
        HEADER,  # 1
        csv_line(shop.cells("S1")),  # 2
        csv_line(shop.cells("S2", mobile="9.98877E+09")),  # 3: 805
        csv_line(shop.cells("S3", mobile="9.988776655E+09")),  # 4: 805, even when exact
        csv_line(shop.cells("S4", mobile='"9,98877E+09"')),  # 5: 805, a decimal comma
        csv_line(s5),  # 6: 729
        csv_line(shop.cells("S4")),  # 7: S4 itself is still good
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    errors = assert_outcome(
        client,
        auth,
        shop.org_id,
        job,
        failed={3: 805, 4: 805, 5: 805, 6: 729},
        redeemed={2: "S1", 7: "S4"},
    )
    assert "9.98877E+09" in errors[0]["errorMessage"]


def test_leading_zeros_are_kept_in_coupon_codes_and_mobiles(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["000123", "123", "456"])
    zero_mobile = "0712345678"
    create_coupon(
        shop.org_id, shop.series, "0789", issued_to=create_customer(shop.org_id, mobile=zero_mobile)
    )
    lines = [
        HEADER,  # 1
        csv_line(shop.cells("000123")),  # 2: 000123, not 123
        csv_line(shop.cells("000456", mobile=shop.mobile["456"])),  # 3: 702, not 456
        csv_line(shop.cells("123")),  # 4
        csv_line(shop.cells("0789", mobile=zero_mobile)),  # 5
        csv_line(shop.cells("0789", mobile=zero_mobile.lstrip("0"))),  # 6: 701, no zero added
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    assert_outcome(
        client,
        auth,
        shop.org_id,
        job,
        failed={3: 702, 6: 701},
        redeemed={2: "000123", 4: "123", 5: "0789"},
    )


def test_quote_escaped_cells_are_read_as_their_unescaped_value(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["-10OFF", "ABC"])
    mobile = "919988776655"
    create_coupon(
        shop.org_id, shop.series, "=X1", issued_to=create_customer(shop.org_id, mobile=mobile)
    )
    lines = [
        HEADER,  # 1
        csv_line(shop.cells("'=X1", mobile="'+" + mobile)),  # 2: =X1 by +919988776655
        csv_line(shop.cells("'-10OFF", mobile=shop.mobile["-10OFF"])),  # 3
        csv_line(shop.cells("'ABC", mobile=shop.mobile["ABC"])),  # 4: 702, no escape to drop
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    assert_outcome(
        client, auth, shop.org_id, job, failed={4: 702}, redeemed={2: "=X1", 3: "-10OFF"}
    )


# Broken records ---------------------------------------------------------------------------


def test_unterminated_quote_fails_its_record_and_earlier_rows_apply(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["Q1", "Q2", "Q3", "Q4"])
    lines = [
        HEADER,  # 1
        csv_line(shop.cells("Q1")),  # 2
        csv_line(shop.cells("Q2")),  # 3
        csv_line(shop.cells('"Q3')),  # 4: the quote never closes: 807 ...
        csv_line(shop.cells("Q4")),  # ... and swallows what follows
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    errors = assert_outcome(
        client, auth, shop.org_id, job, failed={4: 807}, redeemed={2: "Q1", 3: "Q2"}
    )
    assert "quote" in errors[0]["errorMessage"].lower()


def _nul_file(shop: Shop, nul_offset: int) -> bytes:
    """Header, a good row padded by its unmapped note, then a row with a NUL at `nul_offset`."""
    head = (HEADER_WITH_NOTE + "\n").encode()
    good = csv_line(shop.cells("N1", "")).encode()
    before_nul = f"{SAMPLE_MS},T".encode()
    padding = nul_offset - len(head) - len(good) - 1 - len(before_nul)
    content = (
        head
        + good
        + b"x" * padding
        + b"\n"
        + before_nul
        + b"\x001,"
        + f"{shop.mobile['N2']},N2,\n".encode()
        + (csv_line(shop.cells("N3", "")) + "\n").encode()
    )
    assert content.index(b"\x00") == nul_offset
    return content


def test_nul_byte_after_the_first_8_kib_fails_only_its_row(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["N1", "N2", "N3"])
    content = _nul_file(shop, 8192)  # the first byte past the window judged binary

    job = run_job(client, auth, shop.series, tmp_path, content)

    assert_outcome(client, auth, shop.org_id, job, failed={3: 807}, redeemed={2: "N1", 4: "N3"})


def test_nul_byte_in_the_first_8_kib_is_415(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["N1", "N2", "N3"])
    content = _nul_file(shop, 8191)  # the last byte of the window

    assert_refused(submit(client, auth, shop.series, tmp_path, content), 415, "file", "NUL")
    assert_no_job(client, auth, shop.series)


# Oversized fields and records -------------------------------------------------------------


def _assert_small_sane_report(content: bytes, report: list[list[str]], width: int) -> None:
    assert len(content) < 100_000, len(content)
    assert all(len(row) == width + 4 for row in report), [len(row) for row in report]
    assert all(len(cell) <= 10_000 for row in report for cell in row)


def test_ten_megabyte_field_in_a_mapped_column_is_804(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["M1", "M2"])
    lines = [
        HEADER,  # 1
        csv_line(shop.cells("M1")),  # 2
        csv_line(shop.cells("Z" * MB10)),  # 3: a 10 MB coupon code: 804
        csv_line(shop.cells("M2")),  # 4
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    errors = assert_outcome(
        client, auth, shop.org_id, job, failed={3: 804}, redeemed={2: "M1", 4: "M2"}
    )
    assert errors[0]["fields"][:3] == shop.cells("M1")[:3]
    content, report = errors_csv(client, auth, job)
    _assert_small_sane_report(content, report, 4)
    assert [row[4:6] for row in report[1:]] == [["3", "804"]]


def test_ten_megabyte_field_in_an_unmapped_column_leaves_the_row_good(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["U1", "U2"])
    # Quoted, with delimiters and line breaks inside: still one cell of one record.
    big = '"' + ("y" * 99_998 + ",\n") * (MB10 // 100_000) + '"'
    lines = [
        HEADER_WITH_NOTE,  # 1
        csv_line(shop.cells("U1", big)),  # 2
        csv_line(shop.cells("NOPE", big)),  # 3: 702, reported without its 10 MB
        csv_line(shop.cells("U2", "small")),  # 4
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    assert_outcome(client, auth, shop.org_id, job, failed={3: 702}, redeemed={2: "U1", 4: "U2"})
    content, report = errors_csv(client, auth, job)
    _assert_small_sane_report(content, report, 5)
    assert report[1][:4] == shop.cells("NOPE")
    assert report[1][5:7] == ["3", "702"]


def test_ten_megabyte_field_in_the_first_record_of_a_headerless_file_leaves_the_row_good(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["U1", "U2"])
    lines = [
        csv_line(shop.cells("U1", "y" * MB10)),  # 1: the first record, 10 MB wide
        csv_line(shop.cells("NOPE", "small")),  # 2: 702
        csv_line(shop.cells("U2", "small")),  # 3
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    assert_outcome(client, auth, shop.org_id, job, failed={2: 702}, redeemed={1: "U1", 3: "U2"})


def test_row_with_100000_columns_is_applied_and_reported_at_the_header_width(
    client: TestClient, auth: dict[str, str], org: tuple[int, str], tmp_path: Path
) -> None:
    shop = Shop(org[0], ["W1", "W2"])
    extra = ["x"] * (100_000 - 4)
    lines = [
        HEADER,  # 1
        csv_line(shop.cells("W1", *extra)),  # 2: extra columns are ignored
        csv_line(shop.cells("NOPE", *extra)),  # 3: 702
        csv_line(shop.cells("W2")),  # 4
    ]

    job = run_job(client, auth, shop.series, tmp_path, ("\n".join(lines) + "\n").encode())

    errors = assert_outcome(
        client, auth, shop.org_id, job, failed={3: 702}, redeemed={2: "W1", 4: "W2"}
    )
    assert errors[0]["fields"] == shop.cells("NOPE")
    content, report = errors_csv(client, auth, job)
    _assert_small_sane_report(content, report, 4)
    assert report[1] == [*shop.cells("NOPE"), "3", "702", "COUPON_NOT_FOUND", report[1][7]]


# Files refused at once --------------------------------------------------------------------

EMPTY_OR_HEADER_ONLY = [
    ("empty", b"", "empty"),
    ("utf-8-bom-only", codecs.BOM_UTF8, "no records"),
    ("utf-16-bom-only", codecs.BOM_UTF16_LE, "no records"),
    ("header-only-no-newline", HEADER.encode(), "no data record"),
    ("header-then-blank-lines", (HEADER + "\r\n\r\n   \r\n\r\n").encode(), "no data record"),
    ("header-only-utf-16", codecs.BOM_UTF16_LE + (HEADER + "\r\n").encode("utf-16-le"), "no data"),
]


@pytest.mark.parametrize(
    ("content", "word"),
    [case[1:] for case in EMPTY_OR_HEADER_ONLY],
    ids=[case[0] for case in EMPTY_OR_HEADER_ONLY],
)
def test_empty_and_header_only_files_are_400(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    content: bytes,
    word: str,
) -> None:
    series = create_series(org[0])
    before = stored_files()
    assert_refused(submit(client, auth, series, tmp_path, content), 400, "file", word)
    assert_no_job(client, auth, series)
    assert stored_files() == before


@pytest.mark.parametrize("foreign", FOREIGN, ids=lambda f: f.name)
def test_files_that_are_not_csv_are_415_saying_what_they_are_whatever_their_name(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    foreign: Foreign,
) -> None:
    series = create_series(org[0])
    before = stored_files()
    response = submit(client, auth, series, tmp_path, foreign.build(), name="redeemed.csv")
    assert_refused(response, 415, "file", f"the file is {foreign.format.human}")
    _, message, _ = refusal(response)
    for word in foreign.words:  # and what to do: save it as CSV (XLSX and gzip: not yet read)
        assert word in message, message
    assert_no_job(client, auth, series)
    assert stored_files() == before


# Limits -----------------------------------------------------------------------------------


def test_file_over_the_size_limit_is_413_and_one_at_the_limit_is_applied(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = Shop(org[0], [f"Z{i}" for i in range(3)])
    lines = [HEADER] + [csv_line(shop.cells(f"Z{i}")) for i in range(3)]
    content = ("\n".join(lines) + "\n").encode()
    monkeypatch.setattr(get_settings(), "max_upload_bytes", len(content) - 1)
    before = stored_files()

    assert_refused(submit(client, auth, shop.series, tmp_path, content), 413, "file", "larger than")
    assert_no_job(client, auth, shop.series)
    assert stored_files() == before

    monkeypatch.setattr(get_settings(), "max_upload_bytes", len(content))
    job = run_job(client, auth, shop.series, tmp_path, content)
    assert_outcome(client, auth, shop.org_id, job, failed={}, redeemed={2: "Z0", 3: "Z1", 4: "Z2"})


@pytest.mark.parametrize(
    ("encoding", "newline", "prefix"),
    [
        ("utf-8", "\r\n", "R"),
        ("utf-8", "\r", "上"),
        ("utf-16-le", "\r\n", "R"),
        ("utf-16-be", "\n", "上"),
    ],
    ids=["utf-8-crlf", "utf-8-cr", "utf-16-le-crlf", "utf-16-be-lf-cjk"],
)
def test_file_over_the_row_limit_is_413_and_one_at_the_limit_is_applied(
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encoding: str,
    newline: str,
    prefix: str,
) -> None:
    codes = [f"{prefix}{i}" for i in range(6)]
    shop = Shop(org[0], codes)
    lines = [HEADER] + [csv_line(shop.cells(code)) for code in codes]
    # Seven line breaks (a CRLF is one), whatever the encoding.
    content = ("\ufeff" + newline.join(lines) + newline).encode(encoding)
    monkeypatch.setattr(get_settings(), "max_rows", 6)

    assert_refused(submit(client, auth, shop.series, tmp_path, content), 413, "file", "lines")
    assert_no_job(client, auth, shop.series)

    monkeypatch.setattr(get_settings(), "max_rows", 7)
    job = run_job(client, auth, shop.series, tmp_path, content)
    assert_outcome(
        client,
        auth,
        shop.org_id,
        job,
        failed={},
        redeemed={row: codes[row - 2] for row in range(2, 8)},
    )
