"""What the web page says of a chosen file, judged by its bytes, and how it writes figures.

Each file is made here for real (a zip workbook, gzip, PNG, PDF, ...) and chosen in Chromium's
file input, as a person would; the page's own modules are imported in the browser where a
formatting rule is checked on its own.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.factories import SAMPLE_MS, write_csv
from tests.webpage import playwright_expect, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest_plugins = ["tests.browser"]  # its fixtures: page, phone, any_width
pytestmark = pytest.mark.timeout(300)

CSV_TEXT = b"redeemedDateInMillis;redeemedAt;mobile;couponCode\n1603128622000;T1;9800000000;C1\n"


def _xlsx() -> bytes:
    """A minimal Excel workbook, as Excel lays one out: the parts' names are what tells it."""
    sheet = (
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>redeemedDateInMillis</t></is></c>'
        "</row></sheetData></worksheet>"
    )
    parts = {
        "[Content_Types].xml": "<Types/>",
        "_rels/.rels": "<Relationships/>",
        "xl/workbook.xml": "<workbook><sheets><sheet name='S' sheetId='1'/></sheets></workbook>",
        "xl/_rels/workbook.xml.rels": "<Relationships/>",
        "xl/worksheets/sheet1.xml": sheet,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        for name, text in parts.items():
            book.writestr(name, text)
    return out.getvalue()


def _zip_of_csv() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("redeemed.csv", CSV_TEXT)
    return out.getvalue()


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _pdf() -> bytes:
    return b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _binary() -> bytes:
    # Text-like at first sight, but a NUL byte in its first 8 KiB: not a CSV in any encoding.
    return b"redeemedDateInMillis,redeemedAt\x00\x00\x01\x02" + bytes(range(256)) * 4


# The service's words (core/formats.py, its 415 to the page's preview).
WORKBOOK = "save the sheet as CSV (UTF-8)"
EXPORT = "save the redemptions as CSV (UTF-8)"
# (the file's name, its bytes, what the page must call it, what it must say to do)
NOT_CSV: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("book.xlsx", _xlsx, "an Excel workbook (XLSX)", WORKBOOK),
    (
        "redeemed.csv.gz",
        lambda: gzip.compress(CSV_TEXT),
        "a gzip file",
        "the CSV inside",
    ),
    ("export.zip", _zip_of_csv, "a zip archive", "unpack it and upload the CSV inside"),
    ("scan.png", _png, "a PNG image", EXPORT),
    ("report.pdf", _pdf, "a PDF document", EXPORT),
    ("dump.dat", _binary, "binary data (it holds NUL bytes)", EXPORT),
    # The name lies: the bytes decide.
    ("redeemed.csv", _xlsx, "an Excel workbook (XLSX)", WORKBOOK),
]


def _choose(page: Page, path: Path) -> None:
    page.get_by_label("File (CSV)").set_input_files(str(path))


@pytest.mark.parametrize(
    ("name", "make", "what", "advice"), NOT_CSV, ids=[case[0] for case in NOT_CSV]
)
def test_a_file_that_is_not_a_csv_is_named_for_what_it_is_and_not_offered_for_upload(
    page: Page,
    org: tuple[int, str],
    tmp_path: Path,
    name: str,
    make: Callable[[], bytes],
    what: str,
    advice: str,
) -> None:
    expect = playwright_expect()
    path = tmp_path / name
    path.write_bytes(make())
    sign_in(page, org[1])
    _choose(page, path)

    info = page.locator("#file-info")
    expect(info).to_contain_text(f"{name} is {what}")
    expect(info).to_contain_text(advice)
    # What the old page said of such files: columns counted in binary bytes.
    expect(info).not_to_have_text(re.compile(r"\d+ columns?, \w+-separated"))
    # Nothing to map and nothing to send: the page does not offer the upload.
    expect(page.locator("#mapping")).to_be_hidden()
    expect(page.get_by_role("button", name="Upload")).to_be_disabled()


def test_a_workbook_is_told_to_be_saved_as_csv_and_a_csv_is_then_accepted(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    expect = playwright_expect()
    book = tmp_path / "book.xlsx"
    book.write_bytes(_xlsx())
    sign_in(page, org[1])
    _choose(page, book)
    info = page.locator("#file-info")
    expect(info).to_contain_text("save the sheet as CSV")
    expect(info).to_contain_text("does not read yet")

    # Saved as CSV, but still named .xlsx: read as the CSV it is.
    saved = tmp_path / "book-saved.xlsx"
    saved.write_bytes(CSV_TEXT)
    _choose(page, saved)
    expect(info).to_have_text("book-saved.xlsx: 4 columns, semicolon-separated, with a header row.")
    expect(page.locator("#mapping")).to_be_visible()
    expect(page.get_by_role("button", name="Upload")).to_be_enabled()


def test_a_gzip_file_is_told_to_be_decompressed(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    path = tmp_path / "redeemed.csv.gz"
    path.write_bytes(gzip.compress(CSV_TEXT))
    sign_in(page, org[1])
    _choose(page, path)
    playwright_expect()(page.locator("#file-info")).to_contain_text("decompress it")


def test_one_column_is_one_column(page: Page, org: tuple[int, str], tmp_path: Path) -> None:
    expect = playwright_expect()
    sign_in(page, org[1])
    _choose(page, write_csv(tmp_path / "one.csv", ["couponCode"], [["C1"]]))
    expect(page.locator("#file-info")).to_have_text(
        "one.csv: 1 column, comma-separated, with a header row."
    )
    _choose(page, write_csv(tmp_path / "two.csv", None, [[SAMPLE_MS, "T1"]]))
    expect(page.locator("#file-info")).to_have_text(
        "two.csv: 2 columns, comma-separated, no header row (its first line is data)."
    )


def test_figures_are_whole_numbers_grouped_for_the_reader(page: Page) -> None:
    shown = page.evaluate(
        """async () => {
          const format = await import("/static/format.js");
          return [27008.2, 27008.5, 0.4, 1234567, 999.9].map(format.whole);
        }"""
    )
    assert shown == ["27,008", "27,009", "0", "1,234,567", "1,000"]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="redemptions_50k-errors-4.csv"', "redemptions_50k-errors-4.csv"),
        ("attachment; filename=plain-errors-4.csv", "plain-errors-4.csv"),
        # RFC 8187's extended form wins over the plain one, whichever comes first.
        (
            "attachment; filename=\"caf_-errors-7.csv\"; filename*=UTF-8''caf%C3%A9-errors-7.csv",
            "café-errors-7.csv",
        ),
        (
            "attachment; filename*=utf-8'en'%E2%82%AC%20rates.csv; filename=\"EUR rates.csv\"",
            "€ rates.csv",
        ),
        ("attachment; filename*=iso-8859-1''caf%E9.csv", "café.csv"),
        ('attachment; filename="semi;colon \\"quoted\\".csv"', 'semi;colon "quoted".csv'),
        # A directory part is never followed; nothing usable gives null, and the page's own name.
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ("attachment; filename*=UTF-8''%ZZbroken; filename=\"fallback.csv\"", "fallback.csv"),
        ("attachment", None),
        ("", None),
    ],
)
def test_the_report_is_saved_under_the_name_content_disposition_gives(
    page: Page, header: str, name: str | None
) -> None:
    found = page.evaluate(
        """async (header) => {
          const download = await import("/static/download.js");
          return download.attachmentName(header);
        }""",
        header,
    )
    assert found == name


def test_an_empty_file_is_said_to_be_empty(
    page: Page, org: tuple[int, str], tmp_path: Path
) -> None:
    expect = playwright_expect()
    path = tmp_path / "nothing.csv"
    path.write_bytes(b"")
    sign_in(page, org[1])
    _choose(page, path)
    # The service's word for it (core/uploads/form.py), of the file by its name.
    expect(page.locator("#file-info")).to_have_text("nothing.csv is empty")
    expect(page.get_by_role("button", name="Upload")).to_be_disabled()
