"""What a file is, told by its first bytes (never by its name), and what the service reads.

The API's 415 and the CLI's refusal before sending come from here, so that both name the same
things in the same words (DESIGN.md, Uploads: a 415 says what the file is and to save it as CSV).
"""

from __future__ import annotations

import codecs
import struct
import zipfile
from enum import StrEnum
from pathlib import Path

# A NUL byte this early, outside UTF-16, is a binary file (DESIGN.md); magic numbers sit at 0.
SNIFF_BYTES = 8192
# What the CLI reads of a file on disk before it opens a zip whole: well past
# [Content_Types].xml and _rels/.rels, which workbook writers put before the xl/ parts.
ZIP_SCAN_BYTES = 64 * 1024

_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"  # the end record alone: a zip of nothing
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# The stream names of an Excel 97-2003 workbook ("Book" for Excel 5), UTF-16 LE in the directory.
_XLS_STREAMS = ("Workbook".encode("utf-16-le"), "Book".encode("utf-16-le"))
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class FileFormat(StrEnum):
    CSV = "csv"  # text, in any encoding the service reads
    GZIP = "gzip"
    XLSX = "xlsx"
    XLS = "xls"
    OLE2 = "ole2"  # an Office 97-2003 file that does not show itself as a workbook
    ZIP = "zip"
    PNG = "png"
    PDF = "pdf"
    BINARY = "binary"

    @property
    def human(self) -> str:
        """The format as a user would name it, with its article: "an Excel workbook (XLSX)"."""
        return _HUMAN[self]


_HUMAN = {
    FileFormat.CSV: "a text file (CSV)",
    FileFormat.GZIP: "a gzip file",
    FileFormat.XLSX: "an Excel workbook (XLSX)",
    FileFormat.XLS: "an Excel 97-2003 workbook (XLS)",
    FileFormat.OLE2: "an Office 97-2003 file (OLE2, such as an old XLS or DOC)",
    FileFormat.ZIP: "a zip archive",
    FileFormat.PNG: "a PNG image",
    FileFormat.PDF: "a PDF document",
    FileFormat.BINARY: "binary data (it holds NUL bytes)",
}

# What the service reads today. XLSX and gzip are in DESIGN.md and come with the real-files
# issue; until then they are refused like the rest, and told so.
READABLE: frozenset[FileFormat] = frozenset({FileFormat.CSV})
COMING: frozenset[FileFormat] = frozenset({FileFormat.XLSX, FileFormat.GZIP})

_WHAT_TO_DO = {
    FileFormat.GZIP: "decompress it (gunzip) and upload the CSV inside",
    FileFormat.XLSX: "open it in Excel and save the sheet as CSV (UTF-8), then upload that",
    FileFormat.XLS: "open it in Excel and save the sheet as CSV (UTF-8), then upload that",
    FileFormat.ZIP: "unpack it and upload the CSV inside",
}
_SAVE_AS_CSV = "save the redemptions as CSV (UTF-8) and upload that"


def sniff(prefix: bytes) -> FileFormat:
    """The format of a file that starts with `prefix` (its first 8 KiB or more)."""
    if prefix.startswith(b"\x89PNG\r\n\x1a\n"):
        return FileFormat.PNG
    if prefix.startswith(b"\x1f\x8b"):
        return FileFormat.GZIP
    if prefix.startswith(b"%PDF-"):
        return FileFormat.PDF
    if prefix.startswith(_ZIP_LOCAL_HEADER) or prefix.startswith(_ZIP_EMPTY):
        names = zip_entry_names(prefix)
        return FileFormat.XLSX if _is_workbook(names) else FileFormat.ZIP
    if prefix.startswith(_OLE2):
        if any(stream in prefix for stream in _XLS_STREAMS):
            return FileFormat.XLS
        return FileFormat.OLE2
    if not prefix.startswith(_UTF16_BOMS) and b"\x00" in prefix[:SNIFF_BYTES]:
        return FileFormat.BINARY
    return FileFormat.CSV


def sniff_path(path: Path) -> FileFormat:
    """The format of a file on disk; a zip is opened whole, to see its entries for sure."""
    with path.open("rb") as handle:
        found = sniff(handle.read(ZIP_SCAN_BYTES))
    if found in (FileFormat.ZIP, FileFormat.XLSX):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return found  # cut short or damaged: the local headers are all there is to go on
        return FileFormat.XLSX if _is_workbook(names) else FileFormat.ZIP
    return found


def refusal(found: FileFormat, subject: str = "the file") -> str | None:
    """Why a file of this format is not uploaded and what to do instead; None if it is read."""
    if found in READABLE:
        return None
    todo = _WHAT_TO_DO.get(found, _SAVE_AS_CSV)
    if found in COMING:
        return (
            f"{subject} is {found.human}, which the service does not read yet "
            f"(only CSV for now): {todo}"
        )
    return f"{subject} is {found.human}, not a CSV: {todo}"


def zip_entry_names(prefix: bytes) -> list[str]:
    """The entry names of the zip's local headers found in `prefix`, in file order.

    Each header is read where the previous entry ends; past an entry whose size is not in its
    header (written after the data, flag bit 3, or in a zip64 field) the next signature is
    looked for instead.
    """
    names: list[str] = []
    at = 0
    while prefix.startswith(_ZIP_LOCAL_HEADER, at) and at + 30 <= len(prefix):
        (flags,) = struct.unpack_from("<H", prefix, at + 6)
        (compressed,) = struct.unpack_from("<I", prefix, at + 18)
        name_length, extra_length = struct.unpack_from("<HH", prefix, at + 26)
        name_at = at + 30
        raw_name = prefix[name_at : name_at + name_length]
        if len(raw_name) < name_length:
            break
        # Bit 11: the name is UTF-8; else CP437, as the zip format says.
        names.append(raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace"))
        data_at = name_at + name_length + extra_length
        if flags & 0x08 or compressed == 0xFFFFFFFF:  # the size is elsewhere (or zip64)
            following = prefix.find(_ZIP_LOCAL_HEADER, data_at)
            if following < 0:
                break
            at = following
        else:
            at = data_at + compressed
    return names


def _is_workbook(names: list[str]) -> bool:
    # xl/workbook.xml is the workbook itself; a prefix may end before it, but any xl/ part
    # (styles, sheets) after [Content_Types].xml says the same.
    return "xl/workbook.xml" in names or (
        "[Content_Types].xml" in names and any(name.startswith("xl/") for name in names)
    )
