"""core/formats.py: what a file is, from its first bytes, and the words that refuse it."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from core.csvstream import binary_reason
from core.formats import SNIFF_BYTES, FileFormat, refusal, sniff, sniff_path, zip_entry_names
from tests.foreign_files import FOREIGN, REDEMPTIONS, Foreign, docx_like, xls, xlsx


@pytest.mark.parametrize("foreign", FOREIGN, ids=lambda f: f.name)
def test_each_foreign_file_is_told_by_its_first_bytes(foreign: Foreign) -> None:
    content = foreign.build()

    assert sniff(content[:SNIFF_BYTES]) is foreign.format
    reason = binary_reason(content)
    assert reason is not None
    assert reason.startswith(f"the file is {foreign.format.human}")
    for word in foreign.words:
        assert word in reason, reason


@pytest.mark.parametrize(
    "text",
    [
        REDEMPTIONS,
        codecs.BOM_UTF8 + REDEMPTIONS,
        # UTF-16 is full of NUL bytes, and text all the same: its BOM says so.
        REDEMPTIONS.decode().encode("utf-16"),
        codecs.BOM_UTF16_BE + REDEMPTIONS.decode().encode("utf-16-be"),
        b"",
    ],
    ids=["utf-8", "utf-8 BOM", "utf-16 LE", "utf-16 BE", "empty"],
)
def test_text_is_a_csv_and_is_not_refused(text: bytes) -> None:
    assert sniff(text) is FileFormat.CSV
    assert binary_reason(text) is None


def test_a_nul_byte_counts_only_in_the_first_8_kib() -> None:
    late = REDEMPTIONS * (SNIFF_BYTES // len(REDEMPTIONS) + 1) + b"\x00"

    assert sniff(late) is FileFormat.CSV  # the row with it fails as a malformed row instead
    assert sniff(b"\x00" + late) is FileFormat.BINARY


def test_a_workbook_streamed_with_sizes_after_the_data_is_still_a_workbook() -> None:
    content = xlsx(streamed=True)

    assert content[6] & 0x08  # the writer could not seek: sizes follow each entry's data
    assert "xl/workbook.xml" in zip_entry_names(content)
    assert sniff(content) is FileFormat.XLSX


def test_zips_that_are_not_workbooks_are_zips() -> None:
    assert sniff(docx_like()) is FileFormat.ZIP
    assert sniff(b"PK\x05\x06" + bytes(18)) is FileFormat.ZIP  # an empty archive


def test_an_ole2_file_without_a_workbook_stream_is_not_called_an_xls() -> None:
    word = xls(stream_name="WordDocument")

    assert sniff(word) is FileFormat.OLE2
    assert "Office 97-2003 file" in (refusal(FileFormat.OLE2) or "")


def test_on_disk_a_zip_is_opened_to_see_a_workbook_whose_parts_come_late(tmp_path: Path) -> None:
    path = tmp_path / "late.xlsx"
    path.write_bytes(xlsx(padding=200_000))  # a big first entry: the xl/ parts are far in

    assert sniff(path.read_bytes()[:SNIFF_BYTES]) is FileFormat.ZIP
    assert sniff_path(path) is FileFormat.XLSX


def test_refusals_name_the_subject_and_what_to_do() -> None:
    assert refusal(FileFormat.CSV) is None
    assert refusal(FileFormat.XLSX, "book.xlsx") == (
        "book.xlsx is an Excel workbook (XLSX), which the service does not read yet "
        "(only CSV for now): open it in Excel and save the sheet as CSV (UTF-8), then upload that"
    )
    assert refusal(FileFormat.PNG) == (
        "the file is a PNG image, not a CSV: save the redemptions as CSV (UTF-8) and upload that"
    )
