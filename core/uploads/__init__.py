"""Accepting an upload: the file streamed to storage and measured, the request judged, the job made.

Everything that can be judged without reading the whole file is judged here, synchronously,
so that a bad request fails at once with a clear message instead of as a failed job.
"""

from core.uploads.create import create_job, existing_for_key, fingerprint, job_for_key, key_conflict
from core.uploads.form import UploadForm, UploadPlan, judge
from core.uploads.sink import PREFIX_BYTES, FileSink

__all__ = [
    "PREFIX_BYTES",
    "FileSink",
    "UploadForm",
    "UploadPlan",
    "create_job",
    "existing_for_key",
    "fingerprint",
    "job_for_key",
    "judge",
    "key_conflict",
]
