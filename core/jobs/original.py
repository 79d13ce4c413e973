"""The file a job was made from, as uploaded, while retention keeps it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from core.errors import DomainError, ErrorKind
from core.models import UploadJob
from core.storage import BlobMissing, get_storage

READ_BYTES = 1 << 20


def open_original(job: UploadJob) -> BinaryIO:
    """The job's stored file, opened at its start; 404 for a revert (it has no file of its
    own), 410 once retention has purged it. Opened here, before any byte of an answer is
    sent, so that a file gone meanwhile is a 410 too, not a cut-off download."""
    if job.kind == "REVERT" or job.storage_key == "":
        raise DomainError(
            ErrorKind.NOT_FOUND,
            f"job {job.id} is a revert: it has no file of its own"
            + (f" (job {job.reverts_job_id} has the file it undoes)" if job.reverts_job_id else ""),
        )
    gone = DomainError(
        ErrorKind.GONE,
        f"the file of job {job.id} was deleted after its retention period; its status and"
        " report counts stay",
    )
    if job.file_deleted_at is not None:
        raise gone
    try:
        return get_storage().open(job.storage_key)
    except BlobMissing:
        raise gone from None


def chunks(handle: BinaryIO) -> Iterator[bytes]:
    """The file's bytes, a MiB at a time (memory stays flat), closed at the end or on abort."""
    with handle:
        while data := handle.read(READ_BYTES):
            yield data
