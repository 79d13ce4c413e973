"""Blob storage for uploaded files: written as a stream, read back as a stream from any offset.

A local directory (file://) or an S3 bucket (s3://bucket/prefix, any S3-compatible store).
"""

from __future__ import annotations

import io
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from core.settings import get_settings


class BlobMissing(FileNotFoundError):
    """The stored file of a key is not there (deleted, purged, never written): what a job
    cannot get past, unlike any other FileNotFoundError along its way."""


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class Storage(Protocol):
    # Whether a write may wait on the network (an S3 part upload): the API then writes from
    # its threadpool, not from the event loop.
    writes_block: bool

    def writer(self, key: str) -> BlobWriter: ...
    def open(self, key: str, offset: int = 0) -> BinaryIO: ...
    def delete(self, key: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def check(self) -> None:
        """Raise unless the store is there to be written to; writes nothing (for /readyz)."""
        ...


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
    writes_block = False

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
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError as exc:
            raise BlobMissing(key) from exc
        if offset:
            handle.seek(offset)
        return handle

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def check(self) -> None:
        # Writers make the folders they need: the root, or the nearest folder above it that
        # exists (before the first upload), must be one this process may write in.
        there = self.root
        while not there.exists() and there != there.parent:
            there = there.parent
        if not there.is_dir():
            raise NotADirectoryError(f"storage path {there} is not a directory")
        if not os.access(there, os.W_OK | os.X_OK):
            raise PermissionError(f"storage directory {there} is not writable")


# --- S3 -------------------------------------------------------------------------------------

# S3 wants every part but the last to be at least 5 MiB; 8 MiB parts keep a 1 GiB upload at
# 128 parts, far from the 10,000-part cap, and the writer never holds more than one part.
PART_SIZE = 8 << 20
_MISSING = {"NoSuchKey", "NotFound", "404"}
_READ_ATTEMPTS = 3


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class _S3Writer:
    """A multipart upload, started only once a whole part is buffered: a file smaller than one
    part (an empty one too) is a single PUT at commit."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.done = False

    def write(self, data: bytes) -> None:
        if self.done:
            raise ValueError("write to a committed or aborted blob")
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            with memoryview(self.buffer) as view:
                part = bytes(view[: self.part_size])  # one copy, not two
            del self.buffer[: self.part_size]
            self._upload_part(part)

    def _upload_part(self, data: bytes) -> None:
        if self.upload_id is None:
            started = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = started["UploadId"]
        number = len(self.parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self) -> None:
        if self.done:
            raise ValueError("commit of a committed or aborted blob")
        if self.upload_id is None:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
        else:
            if self.buffer:
                self._upload_part(bytes(self.buffer))
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.buffer = bytearray()
        self.done = True

    def abort(self) -> None:
        # Also after a failed commit (the upload then still exists); a no-op after a commit.
        if self.done:
            return
        self.done = True
        self.buffer = bytearray()
        if self.upload_id is not None:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )


class _S3Reader(io.RawIOBase):
    """An object read lazily from a position by ranged GETs; a seek drops the body and the next
    read asks again from the new position. Every GET is pinned to the ETag seen at open."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str) -> None:
        super().__init__()
        self.client = client
        self.bucket = bucket
        self.key = key
        self.size = size
        self.etag = etag
        self.position = 0
        self.body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self.position + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self.position:
            self._drop_body()
            self.position = target
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed blob")
        want = len(buffer)
        if want == 0 or self.position >= self.size:
            return 0
        for attempt in range(_READ_ATTEMPTS):
            if self.body is None:
                self.body = self._get(self.position)
            try:
                data = self.body.read(want)
                break
            except (IncompleteReadError, ResponseStreamingError):
                # The connection broke mid-body: ask again from where we are.
                self._drop_body()
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        if not data:
            raise OSError(f"s3://{self.bucket}/{self.key} ended at {self.position} of {self.size}")
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _get(self, start: int) -> Any:
        try:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-", IfMatch=self.etag
            )
        except ClientError as exc:
            if _missing(exc):
                raise BlobMissing(f"s3://{self.bucket}/{self.key}") from exc
            raise
        return answer["Body"]

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


class S3Storage:
    writes_block = True

    def __init__(self, client: Any, bucket: str, prefix: str, part_size: int = PART_SIZE) -> None:
        if part_size < 5 << 20:
            raise ValueError("S3 parts are at least 5 MiB")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size

    def _key(self, key: str) -> str:
        # The same rule as the local store, though ".." means nothing to S3: keys stay plain.
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, key: str) -> BlobWriter:
        return _S3Writer(self.client, self.bucket, self._key(key), self.part_size)

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        name = self._key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _missing(exc):
                raise BlobMissing(f"s3://{self.bucket}/{name}") from exc
            raise
        raw = _S3Reader(self.client, self.bucket, name, head["ContentLength"], head["ETag"])
        raw.seek(offset)
        # Buffered, for small reads (the 4-byte BOM sniff) and for TextIOWrapper; the CSV
        # reader's 1 MiB reads go straight to the body.
        return io.BufferedReader(raw, buffer_size=64 << 10)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def check(self) -> None:
        # The bucket answers, with these credentials (a missing bucket or a refusal raises).
        self.client.head_bucket(Bucket=self.bucket)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True


@lru_cache(maxsize=8)
def _s3_client(endpoint_url: str | None, region: str, pid: int) -> Any:
    """One client per endpoint and process (clients are thread-safe, but their connection pools
    must not cross a fork); credentials come from boto3's usual chain."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": 5},
        # Path-style addressing and checksums only where required: what MinIO and most
        # S3-compatible stores accept; AWS itself is left at boto3's defaults.
        s3={"addressing_style": "path"} if endpoint_url else None,
        request_checksum_calculation="when_required" if endpoint_url else "when_supported",
        response_checksum_validation="when_required" if endpoint_url else "when_supported",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def get_storage() -> Storage:
    settings = get_settings()
    parts = urlsplit(settings.storage_url)
    if parts.scheme == "file":
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError("STORAGE_URL s3:// needs a bucket: s3://bucket/prefix")
        client = _s3_client(settings.s3_endpoint_url, settings.s3_region, os.getpid())
        return S3Storage(client, parts.netloc, unquote(parts.path))
    raise ValueError(f"unsupported STORAGE_URL scheme {parts.scheme!r} (file:// or s3://)")
