"""The uploaded file on its way to storage: counted, hashed and its start kept, as it streams."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

from core.csvstream import (
    LineCounter,
)
from core.errors import DomainError, ErrorKind, FieldProblem
from core.settings import get_settings
from core.storage import BlobWriter, Storage, new_key

# What the API keeps of the file's start, for sniffing it (and reading small files whole).
PREFIX_BYTES = 1 << 20


class _NoWriter:
    """Where the bytes of a file that must not be kept go: nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


class FileSink:
    """Writes the uploaded bytes to storage while counting, hashing and keeping the start.

    With `store=False` it only counts and hashes: for a request whose Idempotency-Key already
    made a job, which either is that job again or a 409, and never stores a byte."""

    def __init__(self, storage: Storage, org_id: int, *, store: bool = True) -> None:
        settings = get_settings()
        self.max_bytes = settings.max_upload_bytes
        self.max_rows = settings.max_rows
        self.storage = storage
        self.stores = store
        self.key = new_key(org_id)
        self.writer: BlobWriter = storage.writer(self.key) if store else _NoWriter()
        self.size = 0
        self.lines = LineCounter()
        self.sha256 = hashlib.sha256()
        self.prefix = bytearray()
        self.open = True

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            raise DomainError(
                ErrorKind.TOO_LARGE,
                f"the file is larger than the limit of {self.max_bytes} bytes",
                [FieldProblem("file", f"larger than {self.max_bytes} bytes")],
            )
        if self.lines.feed(data) > self.max_rows:
            raise DomainError(
                ErrorKind.TOO_LARGE,
                f"the file has more than the limit of {self.max_rows} lines",
                [FieldProblem("file", f"more than {self.max_rows} lines")],
            )
        self.sha256.update(data)
        if len(self.prefix) < PREFIX_BYTES:
            self.prefix += data[: PREFIX_BYTES - len(self.prefix)]
        self.writer.write(data)

    def commit(self) -> None:
        self.writer.commit()
        self.open = False

    def reread(self) -> BinaryIO:
        """The file from its start: the kept prefix when it is all of it, else from storage
        (a first record may be longer than the prefix; the file must be committed then)."""
        if self.size <= len(self.prefix):
            return io.BytesIO(bytes(self.prefix))
        if self.open:
            raise RuntimeError("commit the file before reading it back")
        return self.storage.open(self.key)

    def discard(self) -> None:
        """Throw the file away, written in part or whole."""
        if self.open:
            self.writer.abort()
            self.open = False
        elif self.stores:
            self.storage.delete(self.key)
