"""Blob storage for uploaded files: written as a stream, read back as a stream from any offset."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from core.settings import get_settings


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class Storage(Protocol):
    def writer(self, key: str) -> BlobWriter: ...
    def open(self, key: str, offset: int = 0) -> BinaryIO: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...


def new_key(org_id: int) -> str:
    """A generated name under the org's prefix: the user's file name never reaches a path."""
    return f"org-{org_id}/{uuid.uuid4().hex}.csv"


class _LocalWriter:
    def __init__(self, final: Path) -> None:
        self.final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self.partial = final.with_name(final.name + ".part")
        self.file: BinaryIO = open(self.partial, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        self.file.close()
        os.replace(self.partial, self.final)

    def abort(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def writer(self, key: str) -> BlobWriter:
        return _LocalWriter(self._path(key))

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        handle = open(self._path(key), "rb")  # noqa: SIM115 - the caller closes it
        if offset:
            handle.seek(offset)
        return handle

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def get_storage() -> Storage:
    url = get_settings().storage_url
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(unquote(parts.path)))
    raise ValueError(f"unsupported STORAGE_URL scheme {parts.scheme!r} (only file:// for now)")
