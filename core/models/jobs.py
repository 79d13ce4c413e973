"""Upload jobs and the row errors they report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at_column, org_fk

ACTIVE_STATUSES = ("QUEUED", "RUNNING")
TERMINAL_STATUSES = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED")
JOB_STATUSES = ACTIVE_STATUSES + TERMINAL_STATUSES
# An import applies a file's rows; a revert undoes what one import applied (DESIGN.md, Revert).
JOB_KINDS = ("IMPORT", "REVERT")


class UploadJob(Base):
    __tablename__ = "upload_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in JOB_STATUSES) + ")", name="status_known"
        ),
        CheckConstraint("rows_processed = rows_succeeded + rows_failed", name="rows_add_up"),
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in JOB_KINDS) + ")", name="kind_known"
        ),
        CheckConstraint(
            "(kind = 'REVERT') = (reverts_job_id IS NOT NULL)", name="revert_names_its_import"
        ),
        CheckConstraint("max_error_rate BETWEEN 0 AND 1", name="max_error_rate_share"),
        # A revert has no file of its own (migration 0012).
        CheckConstraint("(kind = 'REVERT') = (storage_key = '')", name="only_reverts_have_no_file"),
        # One revert of an import at a time, and none once one has succeeded.
        Index(
            "ux_upload_jobs_one_revert",
            "reverts_job_id",
            unique=True,
            postgresql_where=text("reverts_job_id IS NOT NULL AND status <> 'FAILED'"),
        ),
        UniqueConstraint("org_id", "idempotency_key"),
        Index("ix_upload_jobs_org_id_series_id_id", "org_id", "series_id", "id"),
        Index("ix_upload_jobs_org_id_id", "org_id", "id"),
        Index("ix_upload_jobs_finished_at", "finished_at"),
        Index(
            "ix_upload_jobs_active",
            "status",
            postgresql_where=text("status IN ('QUEUED', 'RUNNING')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = org_fk()
    series_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("coupon_series.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(32), nullable=False, server_default="QUEUED")
    kind: Mapped[str] = mapped_column(String(16), nullable=False, server_default="IMPORT")
    # The import a REVERT job undoes (migration 0011).
    reverts_job_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("upload_jobs.id", ondelete="CASCADE")
    )
    # Who made the job: the key, and its label as it was then (a deleted key leaves the label).
    uploaded_by_key_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    uploaded_by_label: Mapped[str | None] = mapped_column(Text)

    # The request, as understood at upload time.
    customer_identifier: Mapped[str] = mapped_column(String(16), nullable=False)
    coupon_identifier: Mapped[str] = mapped_column(String(16), nullable=False)
    upload_headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    delimiter: Mapped[str] = mapped_column(String(1), nullable=False)
    has_header: Mapped[bool] = mapped_column(Boolean, nullable=False)
    encoding: Mapped[str] = mapped_column(String(16), nullable=False)
    # The cells of the errors CSV's header row (the uploaded header, or made-up names).
    report_header: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    dry_run: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # The guard: the failed share (0 to 1) above which the job stops, FAILED; None: no guard.
    max_error_rate: Mapped[float | None] = mapped_column(Float)
    details: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    # The file.
    file_name: Mapped[str] = mapped_column(Text, nullable=False)
    file_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    file_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    storage_key: Mapped[str] = mapped_column(Text, nullable=False)
    file_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Progress and checkpoint, committed with each chunk.
    bytes_processed: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    next_record: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="1")
    rows_processed: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    rows_succeeded: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    rows_failed: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # Row errors by code ({"701": 3}), kept with each chunk so that polling never counts rows.
    error_counts: Mapped[dict[str, int]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )

    # Execution: who holds the job and until when (fencing), and how often it was tried.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # A lost lease counts toward the attempts' limit only when the job committed no chunk
    # since its previous loss (migration 0009): how many times in a row it was lost at the
    # checkpoint it was last lost at, and when its next attempt may start (NULL: no retry due).
    stalled_losses: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    lost_at_record: Mapped[int | None] = mapped_column(BigInteger)
    retry_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    failure_reason: Mapped[str | None] = mapped_column(Text)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobRowKey:
    """A row of one job's file: what row errors and a dry run's would-be redemptions hang on."""

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("upload_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    row_number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = org_fk()


class JobRowError(JobRowKey, Base):
    __tablename__ = "job_row_errors"

    code: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)
    # The row's raw cells, cut to the report's width, for the errors CSV.
    cells: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)


class DryRunRedemption(JobRowKey, Base):
    """What a dry run would have redeemed: the later rows of the same job check against it as
    a real run checks against `redemptions`. Deleted when the job ends."""

    __tablename__ = "dry_run_redemptions"
    __table_args__ = (
        Index("ix_dry_run_redemptions_job_id_coupon_id", "job_id", "coupon_id"),
        Index("ix_dry_run_redemptions_job_id_customer_id", "job_id", "customer_id"),
    )

    coupon_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    customer_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    redeemed_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    till_id: Mapped[str] = mapped_column(Text, nullable=False)
    bill_id: Mapped[str] = mapped_column(Text, nullable=False)
    bill_number: Mapped[str] = mapped_column(Text, nullable=False)
