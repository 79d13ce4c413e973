"""Streaming CSV: encoding and dialect detection, and records with the byte offset after each.

Records come from the stdlib `csv` reader (C, RFC 4180 quoting) fed with lines we split
ourselves, so that we know how many bytes every record used: the worker checkpoints that
offset and resumes from it with a ranged read.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from core.formats import refusal, sniff

BLOCK_SIZE = 1 << 20
# A single line (or field) above this is damage, not data: it bounds what one record can hold.
MAX_LINE_BYTES = 32 << 20
# What a malformed record keeps of its raw text for the error report.
MAX_RAW_KEPT = 64 << 10
DELIMITERS = (",", ";", "\t", "|")

csv.field_size_limit(MAX_LINE_BYTES)

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def sniff_encoding(prefix: bytes) -> tuple[str, int]:
    """The encoding (utf-8, utf-16-le or utf-16-be) and the length of the BOM to skip."""
    for bom, encoding in _BOMS:
        if prefix.startswith(bom):
            return encoding, len(bom)
    return "utf-8", 0


class LineCounter:
    """Counts line ends (LF, CRLF, a lone CR) in a byte stream, in the stream's own encoding.

    UTF-16 is counted in code units: its bytes 0x0A and 0x0D also occur inside characters
    (上 is 0A 4E in UTF-16 LE) and its CRLF is four bytes.
    """

    def __init__(self) -> None:
        self.count = 0
        self._head = b""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._decided = False
        self._last_cr = False

    def feed(self, data: bytes) -> int:
        if not self._decided:
            self._head += data
            if len(self._head) < 2:
                return self.count
            encoding, _ = sniff_encoding(self._head)
            if encoding.startswith("utf-16"):
                self._decoder = codecs.getincrementaldecoder(encoding)("replace")
            self._decided = True
            data, self._head = self._head, b""
        if self._decoder is not None:
            self._count_text(self._decoder.decode(data))
        else:
            self._count_bytes(data)
        return self.count

    def _count_bytes(self, chunk: bytes) -> None:
        breaks = chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        if self._last_cr and chunk[:1] == b"\n":
            breaks -= 1
        if chunk:
            self._last_cr = chunk[-1:] == b"\r"
        self.count += breaks

    def _count_text(self, chunk: str) -> None:
        breaks = chunk.count("\n") + chunk.count("\r") - chunk.count("\r\n")
        if self._last_cr and chunk[:1] == "\n":
            breaks -= 1
        if chunk:
            self._last_cr = chunk[-1:] == "\r"
        self.count += breaks


def binary_reason(prefix: bytes) -> str | None:
    """Why the file is not a CSV the service reads (judged on its start), or None when it is."""
    return refusal(sniff(prefix))


def detect_delimiter(text: str) -> str:
    """The candidate seen most often outside quotes in the first non-blank record; ties: comma."""
    counts = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    seen_content = False
    for ch in text:
        if ch == '"':
            in_quotes = not in_quotes
            seen_content = True
        elif in_quotes:
            continue
        elif ch in "\r\n":
            if seen_content:
                break
        else:
            if ch in counts:
                counts[ch] += 1
            if not ch.isspace():
                seen_content = True
    # max() keeps the first of equals, and DELIMITERS starts with the comma.
    return max(DELIMITERS, key=lambda d: counts[d])


@dataclass(slots=True)
class Record:
    number: int  # 1-based record number in the file, the header counting as 1
    cells: list[str]
    end_offset: int  # bytes of the file consumed once this record is read
    damage: str | None = None  # why the record is malformed (807), if it is

    @property
    def is_blank(self) -> bool:
        """An empty line, or one of empty cells only (`,,,`: spreadsheets save such rows)."""
        return self.damage is None and not "".join(self.cells).strip()


class _LineFeed:
    """Splits the byte stream into lines for csv.reader and keeps score of what was consumed."""

    def __init__(self, raw: BinaryIO, encoding: str, offset: int) -> None:
        self.raw = raw
        self.encoding = encoding
        self.offset = offset
        self.damage: str | None = None
        self.kept: list[str] = []
        self.kept_size = 0

    def start_record(self) -> None:
        self.damage = None
        if self.kept:
            self.kept = []
            self.kept_size = 0

    def _keep(self, text: str) -> None:
        if self.kept_size < MAX_RAW_KEPT:
            self.kept.append(text)
            self.kept_size += len(text)

    def _mark(self, damage: str) -> None:
        if self.damage is None:
            self.damage = damage

    def lines(self) -> Iterator[str]:
        if self.encoding == "utf-8":
            return self._utf8_lines()
        return self._wide_lines()

    def _byte_lines(self) -> Iterator[bytes]:
        read = self.raw.read
        carry = b""
        while True:
            block = read(BLOCK_SIZE)
            if not block:
                break
            data = carry + block if carry else block
            pieces = data.splitlines(keepends=True)
            last = pieces[-1]
            # A line without its end may go on in the next block; so may "\r" (then "\n").
            if last.endswith(b"\n"):
                carry = b""
            else:
                carry = pieces.pop()
                if len(carry) > MAX_LINE_BYTES:
                    self._mark("a line longer than the limit")
                    yield carry
                    carry = b""
            yield from pieces
        if carry:
            yield carry

    def _utf8_lines(self) -> Iterator[str]:
        keep = self._keep
        for line in self._byte_lines():
            self.offset += len(line)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", "replace")
                self._mark("bytes that are not valid UTF-8")
            if "\x00" in text:
                text = text.replace("\x00", "\ufffd")
                self._mark("a NUL byte")
            keep(text)
            yield text

    def _wide_lines(self) -> Iterator[str]:
        text_stream = io.TextIOWrapper(
            self.raw, encoding=self.encoding, errors="replace", newline=""
        )
        try:
            yield from self._decoded(text_stream)
        finally:
            # Detach, or the wrapper would close the caller's stream when it is collected.
            text_stream.detach()

    def _decoded(self, text_stream: io.TextIOWrapper) -> Iterator[str]:
        keep = self._keep
        for text in text_stream:
            self.offset += len(text.encode(self.encoding, "surrogatepass"))
            if "\ufffd" in text:
                self._mark(f"bytes that are not valid {self.encoding.upper()}")
            if "\x00" in text:
                text = text.replace("\x00", "\ufffd")
                self._mark("a NUL byte")
            if len(text) > MAX_LINE_BYTES:
                self._mark("a line longer than the limit")
            keep(text)
            yield text


def read_records(
    raw: BinaryIO,
    *,
    encoding: str,
    delimiter: str,
    offset: int,
    first_number: int = 1,
) -> Generator[Record, None, None]:
    """Records from `raw`, which is positioned at byte `offset` of the file (a record start).

    Every record, blank ones included, is yielded with its number; a record the CSV rules
    cannot read (an open quote at the end, a field over the limit) or whose bytes do not decode
    comes with `damage` set and its raw text as its only cell.
    """
    feed = _LineFeed(raw, encoding, offset)
    reader = csv.reader(feed.lines(), delimiter=delimiter, strict=True)
    number = first_number
    while True:
        feed.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if not feed.kept:
                return
            damage = f"unreadable CSV: {exc}"
            if "unexpected end of data" in str(exc):
                damage = "a quote is left open at the end of the file"
            yield Record(number, ["".join(feed.kept).rstrip("\r\n")], feed.offset, damage)
        else:
            yield Record(number, cells, feed.offset, feed.damage)
        number += 1
