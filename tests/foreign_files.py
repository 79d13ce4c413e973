"""Real files that are not CSV, built with the standard library: what users upload by mistake."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from core.formats import FileFormat

REDEMPTIONS = b"redeemedDateInMillis,redeemedAt,mobile,couponCode\n1603128622000,T1,9988776655,G1\n"

_WORKBOOK_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        "</Types>"
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="xl/workbook.xml" Type="http://schemas.openxmlformats.org'
        '/officeDocument/2006/relationships/officeDocument"/>'
        "</Relationships>"
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Target="worksheets/sheet1.xml" Type="http://schemas.'
        'openxmlformats.org/officeDocument/2006/relationships/worksheet"/>'
        "</Relationships>"
    ),
    "xl/worksheets/sheet1.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>redeemedDateInMillis</t></is></c>'
        '<c r="B1" t="inlineStr"><is><t>mobile</t></is></c></row>'
        '<row r="2"><c r="A2"><v>1603128622000</v></c><c r="B2"><v>9988776655</v></c></row>'
        "</sheetData></worksheet>"
    ),
}


def xlsx(*, streamed: bool = False, padding: int = 0) -> bytes:
    """A minimal workbook of one sheet, as a spreadsheet program lays it out.

    `streamed`: written to a stream that cannot seek, so each entry's sizes follow its data
    (flag bit 3), as some exporters write. `padding`: bytes of an uncompressed first entry that
    push the workbook's parts that far into the file.
    """
    buffer = io.BytesIO()
    target: io.RawIOBase | io.BytesIO = _Unseekable(buffer) if streamed else buffer
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        if padding:
            archive.writestr(
                zipfile.ZipInfo("docProps/thumbnail.bin"), bytes(padding), zipfile.ZIP_STORED
            )
        for name, text in _WORKBOOK_PARTS.items():
            archive.writestr(name, text)
    return buffer.getvalue()


class _Unseekable(io.RawIOBase):
    def __init__(self, sink: io.BytesIO) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self.sink.write(data)

    def flush(self) -> None:
        pass


def zip_of_csv() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("redemptions.csv", REDEMPTIONS)
    return buffer.getvalue()


def docx_like() -> bytes:
    """An Office Open XML file that is not a workbook (a Word document's layout)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<document/>")
    return buffer.getvalue()


def xls(stream_name: str = "Workbook") -> bytes:
    """An OLE2 compound file (version 3, 512-byte sectors) holding one stream, `Workbook` as an
    Excel 97-2003 file names its own, of a BIFF8 BOF record and zeros."""
    end, free, fat_sector = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD
    stream_sectors = 8  # 4096 bytes: at the mini-stream cutoff, so in ordinary sectors
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
    header += struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
    header += struct.pack("<109I", 0, *([free] * 108))
    fat = [fat_sector, end] + [2 + i + 1 for i in range(stream_sectors - 1)] + [end]
    fat_bytes = struct.pack(f"<{len(fat)}I", *fat) + b"\xff" * (512 - 4 * len(fat))

    def entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le") if name else b""
        return (
            encoded.ljust(64, b"\0")
            + struct.pack("<HBB", len(encoded), kind, 1)
            + struct.pack("<III", free, free, child)
            + bytes(16 + 4 + 16)
            + struct.pack("<IQ", start, size)
        )

    directory = (
        entry("Root Entry", 5, 1, end, 0)
        + entry(stream_name, 2, free, 2, 512 * stream_sectors)
        + entry("", 0, free, 0, 0) * 2
    )
    bof = struct.pack("<HHHHII", 0x0809, 16, 0x0600, 0x0005, 0, 0)
    stream = bof.ljust(512 * stream_sectors, b"\0")
    return header + fat_bytes + directory + stream


def png() -> bytes:
    """A 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def pdf() -> bytes:
    """A one-page PDF with its cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return body


def with_nul() -> bytes:
    return REDEMPTIONS.replace(b"T1", b"T\x001")


@dataclass(frozen=True)
class Foreign:
    """A file that is not a CSV, what it is, and words its refusal must hold."""

    name: str
    build: Callable[[], bytes]
    format: FileFormat
    words: tuple[str, ...]


FOREIGN = (
    Foreign(
        "book.xlsx",
        xlsx,
        FileFormat.XLSX,
        ("Excel workbook (XLSX)", "not read yet", "save the sheet as CSV"),
    ),
    Foreign(
        "book.xls", xls, FileFormat.XLS, ("Excel 97-2003 workbook (XLS)", "save the sheet as CSV")
    ),
    Foreign("redemptions.zip", zip_of_csv, FileFormat.ZIP, ("zip archive", "unpack", "CSV")),
    Foreign(
        "redemptions.csv.gz",
        lambda: gzip.compress(REDEMPTIONS),
        FileFormat.GZIP,
        ("gzip", "not read yet", "gunzip"),
    ),
    Foreign("scan.png", png, FileFormat.PNG, ("PNG image", "save the redemptions as CSV")),
    Foreign("report.pdf", pdf, FileFormat.PDF, ("PDF document", "save the redemptions as CSV")),
    Foreign("dump.bin", with_nul, FileFormat.BINARY, ("NUL bytes", "save the redemptions as CSV")),
)
