"""The service's documents as the CLI reads them: a job, its progress and errors, a page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.models.jobs import TERMINAL_STATUSES as TERMINAL

# The exit status of `upload --wait` and `jobs wait` by the job's end; any other end is 1.
EXIT_BY_STATUS = {"COMPLETED": 0, "COMPLETED_WITH_ERRORS": 2}


@dataclass(frozen=True)
class JobProgress:
    percent: float
    rows_processed: int
    rows_succeeded: int
    rows_failed: int
    rows_per_second: float | None
    eta_seconds: float | None


@dataclass(frozen=True)
class ErrorCount:
    code: int
    name: str
    count: int


@dataclass(frozen=True)
class Job:
    """GET /v1/jobs/{id}, the parts the CLI shows; `document` keeps it all."""

    job_id: int
    series_id: int
    status: str
    file_name: str
    dry_run: bool
    created_at: str | None
    finished_at: str | None
    progress: JobProgress
    error_summary: list[ErrorCount]
    failure_reason: str | None
    document: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def exit_code(self) -> int:
        return EXIT_BY_STATUS.get(self.status, 1)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Job:
        progress = doc.get("progress") or {}
        return cls(
            job_id=int(doc["jobId"]),
            series_id=int(doc.get("couponSeriesId") or 0),
            status=str(doc["status"]),
            file_name=str(doc.get("fileName") or ""),
            dry_run=bool(doc.get("dryRun", False)),
            created_at=doc.get("createdAt"),
            finished_at=doc.get("finishedAt"),
            progress=JobProgress(
                percent=float(progress.get("percent") or 0.0),
                rows_processed=int(progress.get("rowsProcessed") or 0),
                rows_succeeded=int(progress.get("rowsSucceeded") or 0),
                rows_failed=int(progress.get("rowsFailed") or 0),
                rows_per_second=progress.get("rowsPerSecond"),
                eta_seconds=progress.get("etaSeconds"),
            ),
            error_summary=[
                ErrorCount(int(item["code"]), str(item.get("name", "")), int(item["count"]))
                for item in doc.get("errorSummary") or []
            ],
            failure_reason=doc.get("failureReason"),
            document=doc,
        )


@dataclass(frozen=True)
class JobPage:
    """GET /v1/jobs: the jobs, newest first, and the cursor of the next page if there is one."""

    jobs: list[Job]
    next_cursor: str | None
    document: dict[str, Any]


@dataclass(frozen=True)
class DemoLoaded:
    series_id: int
    user_id: int
    coupons: list[tuple[int, str]]  # (couponId, code)


@dataclass(frozen=True)
class PreviewRecord:
    """One data record as the service would read it, and the row error it would get."""

    row_number: int
    values: dict[str, str]
    error_code: int | None
    error_name: str | None
    error_message: str | None


@dataclass(frozen=True)
class Preview:
    """POST /v1/uploads/preview: what the service makes of a file's start; nothing stored."""

    format: str
    encoding: str | None
    delimiter: str | None
    has_header: bool
    header: list[str]
    suggested: dict[str, int]
    required_keys: list[str]
    missing_keys: list[str]  # required, not mapped: the records are not judged
    records: list[PreviewRecord]
    document: dict[str, Any]

    @property
    def failing(self) -> int:
        return sum(record.error_code is not None for record in self.records)

    @property
    def all_apply(self) -> bool:
        return not self.missing_keys and self.failing == 0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Preview:
        return cls(
            format=str(doc["format"]),
            encoding=doc.get("encoding"),
            delimiter=doc.get("delimiter"),
            has_header=bool(doc.get("hasHeader")),
            header=[str(cell) for cell in doc.get("header") or []],
            suggested={
                str(key): int(index)
                for key, index in (doc.get("suggestedUploadHeaders") or {}).items()
            },
            required_keys=[str(key) for key in doc.get("requiredKeys") or []],
            missing_keys=[str(key) for key in doc.get("missingKeys") or []],
            records=[
                PreviewRecord(
                    row_number=int(item["rowNumber"]),
                    values={str(k): "" if v is None else str(v) for k, v in item["values"].items()},
                    error_code=None if item.get("errorCode") is None else int(item["errorCode"]),
                    error_name=item.get("errorName"),
                    error_message=item.get("errorMessage"),
                )
                for item in doc["records"]
            ],
            document=doc,
        )
