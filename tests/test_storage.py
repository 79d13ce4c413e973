"""Both storage backends keep the same promises: streamed writes, reads from any offset, abort
and delete leave nothing, a missing file is FileNotFoundError; and a job runs from S3."""

from __future__ import annotations

import io
import os
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import pipeline
from core.settings import get_settings
from core.storage import PART_SIZE, LocalStorage, S3Storage, Storage, get_storage, new_key
from tests.dbtools import admin_transaction
from tests.factories import SAMPLE_MS, create_series, redeemable_file
from tests.helpers import MOBILE_HEADERS, job_id_of, upload
from tests.s3 import CREDENTIALS, moto_server

BUCKET = "bulkredeem-test"
MiB = 1 << 20


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server with the test bucket; boto3 finds dummy credentials in the env."""
    import boto3

    with pytest.MonkeyPatch.context() as patch, moto_server() as endpoint:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=BUCKET
        )
        yield endpoint


@dataclass
class Backend:
    name: str
    storage: Storage
    root: Path | None = None  # file://
    s3: Any = None  # s3://: a boto3 client, for looking behind the storage's back
    prefix: str = ""

    def object_size_and_parts(self, key: str) -> tuple[int, int]:
        """The stored size, and the number of multipart parts (0: a single PUT)."""
        if self.root is not None:
            return (self.root / key).stat().st_size, 0
        head = self.s3.head_object(Bucket=BUCKET, Key=f"{self.prefix}/{key}")
        etag = head["ETag"].strip('"')
        return head["ContentLength"], int(etag.split("-")[1]) if "-" in etag else 0

    def leftovers(self) -> list[str]:
        """Anything stored at all, finished or not."""
        if self.root is not None:
            return [str(p) for p in self.root.rglob("*") if p.is_file()]
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix + "/")
        uploads = self.s3.list_multipart_uploads(Bucket=BUCKET, Prefix=self.prefix + "/")
        return [o["Key"] for o in listed.get("Contents", [])] + [
            u["Key"] for u in uploads.get("Uploads", [])
        ]


def use_s3(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> str:
    """Point the service's settings at a fresh prefix of the test bucket; the prefix."""
    prefix = f"run-{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(get_settings(), "storage_url", f"s3://{BUCKET}/{prefix}")
    monkeypatch.setattr(get_settings(), "s3_endpoint_url", endpoint)
    monkeypatch.setattr(get_settings(), "s3_region", "us-east-1")
    return prefix


@pytest.fixture(params=["file", "s3"])
def backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Backend:
    if request.param == "file":
        root = tmp_path / "files"
        monkeypatch.setattr(get_settings(), "storage_url", root.as_uri())
        storage = get_storage()
        assert isinstance(storage, LocalStorage)
        return Backend("file", storage, root=root)
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")
    prefix = use_s3(monkeypatch, endpoint)
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return Backend("s3", storage, s3=client, prefix=prefix)


def pattern(size: int) -> bytes:
    """Bytes where every offset is recognisable, so a read from a wrong offset shows."""
    block = bytes(range(251))  # a prime length: no part boundary lines up with it
    return (block * (size // len(block) + 1))[:size]


def store(storage: Storage, data: bytes, piece: int) -> str:
    key = new_key(1)
    writer = storage.writer(key)
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
    writer.commit()
    return key


def read_all(storage: Storage, key: str, offset: int = 0) -> bytes:
    with storage.open(key, offset) as stream:
        return stream.read()


def test_many_small_writes_read_back_whole_and_from_any_offset(backend: Backend) -> None:
    data = pattern(3 * MiB + 17)
    key = store(backend.storage, data, 4096 + 3)
    assert backend.storage.exists(key)
    assert backend.object_size_and_parts(key) == (len(data), 0)  # under a part: one PUT
    assert read_all(backend.storage, key) == data
    for offset in (0, 1, len(data) // 2, len(data) - 1, len(data)):
        assert read_all(backend.storage, key, offset) == data[offset:], offset


def test_writes_larger_than_a_part_make_a_multipart_object(backend: Backend) -> None:
    data = pattern(2 * PART_SIZE + 5 * MiB + 1)
    key = store(backend.storage, data, PART_SIZE + MiB)
    size, parts = backend.object_size_and_parts(key)
    assert size == len(data)
    assert parts == (3 if backend.name == "s3" else 0)
    assert read_all(backend.storage, key) == data
    # Offsets at and around a part boundary.
    for offset in (PART_SIZE - 1, PART_SIZE, PART_SIZE + 1, len(data) - 1, len(data)):
        assert read_all(backend.storage, key, offset) == data[offset:], offset


def test_a_file_of_exactly_one_part_and_an_empty_file(backend: Backend) -> None:
    one = pattern(PART_SIZE)
    key = store(backend.storage, one, MiB)
    assert backend.object_size_and_parts(key)[0] == PART_SIZE
    assert read_all(backend.storage, key, PART_SIZE - 1) == one[-1:]
    empty = new_key(1)
    writer = backend.storage.writer(empty)
    writer.commit()
    assert backend.storage.exists(empty)
    assert read_all(backend.storage, empty) == b""
    assert read_all(backend.storage, empty, 0) == b""


def test_the_stream_reads_in_pieces_seeks_and_tells(backend: Backend) -> None:
    data = pattern(2 * MiB)
    key = store(backend.storage, data, MiB)
    with backend.storage.open(key, 10) as stream:
        assert stream.tell() == 10
        assert stream.read(4) == data[10:14]
        # What the pipeline does at a file's start: sniff the BOM, seek past it.
        stream.seek(3)
        assert stream.tell() == 3
        assert stream.read(MiB) == data[3 : 3 + MiB]
        stream.seek(len(data) - 5)
        assert stream.read(100) == data[-5:]
        assert stream.read(100) == b""
        buffer = bytearray(8)
        stream.seek(100)
        assert isinstance(stream, io.BufferedIOBase)
        assert stream.readinto(buffer) == 8 and bytes(buffer) == data[100:108]


def test_an_s3_read_whose_connection_breaks_goes_on_from_where_it_was(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3(monkeypatch, s3_endpoint)
    storage = get_storage()
    data = pattern(3 * MiB)
    key = store(storage, data, MiB)
    with storage.open(key, 5) as stream:
        assert stream.read(MiB) == data[5 : 5 + MiB]
        raw = getattr(stream, "raw")  # noqa: B009 - the _S3Reader under the buffer
        raw.body._raw_stream.close()  # the HTTP connection drops mid-body
        assert stream.read() == data[5 + MiB :]


def test_abort_leaves_nothing_even_after_parts_were_sent(backend: Backend) -> None:
    key = new_key(1)
    writer = backend.storage.writer(key)
    writer.write(pattern(PART_SIZE + MiB))  # a part is sent, on S3
    writer.abort()
    assert not backend.storage.exists(key)
    assert backend.leftovers() == []
    with pytest.raises(FileNotFoundError):
        backend.storage.open(key)


def test_delete_and_exists(backend: Backend) -> None:
    key = store(backend.storage, b"a,b\n", 10)
    assert backend.storage.exists(key)
    backend.storage.delete(key)
    assert not backend.storage.exists(key)
    backend.storage.delete(key)  # deleting what is gone is no error
    assert backend.leftovers() == []


def test_a_missing_file_is_file_not_found(backend: Backend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.storage.open(new_key(1))
    with pytest.raises(FileNotFoundError):
        backend.storage.open(new_key(1), 123)
    assert not backend.storage.exists(new_key(1))


def test_keys_never_leave_the_root(backend: Backend) -> None:
    with pytest.raises(ValueError):
        backend.storage.writer("../elsewhere.csv")


def test_writing_and_reading_64_mib_keeps_memory_flat(backend: Backend) -> None:
    total, piece = 64 * MiB, MiB
    block = pattern(piece)
    key = new_key(1)
    tracemalloc.start()
    try:
        writer = backend.storage.writer(key)
        for _ in range(total // piece):
            writer.write(block)
        writer.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read = 0
        with backend.storage.open(key) as stream:
            while chunk := stream.read(piece):
                read += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == total
    assert backend.object_size_and_parts(key)[0] == total
    # At most a part buffered and a copy of it in flight, never the file.
    assert write_peak < 3 * PART_SIZE, write_peak
    assert read_peak < 8 * MiB, read_peak


# End to end: the API writes the upload to S3, the pipeline reads it back from there.


@pytest.fixture
def on_s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The service on S3, jobs run in-process: the GetObject ranges the service asks for."""
    import api.uploading

    use_s3(monkeypatch, s3_endpoint)
    # A worker process another test started reads the file store of its own environment: it
    # must not take these jobs, which run here instead.
    monkeypatch.setattr(api.uploading, "enqueue_job", lambda job_id: None)
    ranges: list[str] = []
    storage = get_storage()
    assert isinstance(storage, S3Storage)

    def seen(params: dict[str, Any], **_: Any) -> None:
        ranges.append(params.get("Range", ""))

    storage.client.meta.events.register("provide-client-params.s3.GetObject", seen)
    yield ranges
    storage.client.meta.events.unregister("provide-client-params.s3.GetObject", seen)


def job_row(job_id: int) -> dict[str, Any]:
    with admin_transaction() as session:
        row = session.execute(
            text(
                "SELECT status, rows_processed, rows_succeeded, rows_failed, bytes_processed,"
                " file_size, storage_key FROM upload_jobs WHERE id = :j"
            ),
            {"j": job_id},
        ).one()
        redeemed = session.execute(
            text("SELECT count(*), count(DISTINCT row_number) FROM redemptions WHERE job_id = :j"),
            {"j": job_id},
        ).one()
    return {**row._asdict(), "redemptions": tuple(redeemed)}


def csv_of(
    org_id: int, series: int, rows: int, unknown: int, tmp_path: Path, database_url: str
) -> Path:
    """`rows` redeemable rows, then `unknown` rows of coupons that do not exist."""
    base = 7_000_000_000 + org_id * 1_000_000
    unknowns = [(SAMPLE_MS, "T1", base, f"NOPE{i}") for i in range(unknown)]
    return redeemable_file(
        tmp_path / "upload.csv",
        database_url,
        org_id,
        series,
        rows,
        mobile_base=base,
        extra=unknowns,
    )


def test_an_upload_to_s3_runs_to_completion_from_s3(
    on_s3: list[str],
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
) -> None:
    series = create_series(org[0])
    # Over the API's 1 MiB prefix, so judging the upload reads it back from S3 too.
    path = csv_of(org[0], series, 30_000, 3, tmp_path, database_url)
    assert path.stat().st_size > MiB
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    row = job_row(job)
    assert get_storage().exists(row["storage_key"])
    assert row["file_size"] == path.stat().st_size
    assert pipeline.run_slice(job, slice_seconds=60) is pipeline.SliceResult.DONE
    row = job_row(job)
    assert row["status"] == "COMPLETED_WITH_ERRORS", row
    assert (row["rows_processed"], row["rows_succeeded"], row["rows_failed"]) == (30_003, 30_000, 3)
    assert row["redemptions"] == (30_000, 30_000)
    assert "bytes=0-" in on_s3


def test_a_job_handed_off_mid_file_resumes_on_s3_with_a_ranged_read(
    on_s3: list[str],
    client: TestClient,
    auth: dict[str, str],
    org: tuple[int, str],
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = create_series(org[0])
    path = csv_of(org[0], series, 95, 0, tmp_path, database_url)
    job = job_id_of(upload(client, auth, series, path, MOBILE_HEADERS))
    monkeypatch.setattr(get_settings(), "chunk_rows", 10)
    checkpoints: list[int] = []
    slices = 0
    while True:
        slices += 1
        assert slices < 50
        result = pipeline.run_slice(job, slice_seconds=0)
        if result is pipeline.SliceResult.DONE:
            break
        assert result is pipeline.SliceResult.MORE
        checkpoints.append(job_row(job)["bytes_processed"])
    assert len(checkpoints) >= 2
    assert checkpoints == sorted(set(checkpoints))
    assert 0 < checkpoints[0] < checkpoints[-1] < os.path.getsize(path)
    # Each resumed slice asked S3 for the file from its checkpoint on, not from the start.
    for offset in checkpoints:
        assert f"bytes={offset}-" in on_s3, (offset, on_s3)
    row = job_row(job)
    assert row["status"] == "COMPLETED", row
    assert (row["rows_processed"], row["rows_succeeded"], row["rows_failed"]) == (95, 95, 0)
    assert row["redemptions"] == (95, 95)  # every row applied, and only once


def test_the_s3_check_writes_nothing_and_names_a_missing_bucket(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    prefix = use_s3(monkeypatch, s3_endpoint)
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    storage.check()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("KeyCount", 0) == 0
    monkeypatch.setattr(get_settings(), "storage_url", "s3://no-such-bucket-here/x")
    with pytest.raises(ClientError):
        get_storage().check()
