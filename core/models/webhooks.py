"""Completion webhooks: one delivery per job that asked for a callbackUrl, with its attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at_column, org_fk

DELIVERY_STATES = ("pending", "delivering", "delivered", "failed")


class WebhookDelivery(Base):
    """Made by a trigger on upload_jobs in the transaction that ends the job (migration 0005),
    so no way of ending a job can forget it. Postgres holds its state; a Celery message only
    says "look now"."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in DELIVERY_STATES) + ")", name="state_known"
        ),
        Index(
            "ix_webhook_deliveries_open",
            "next_attempt_at",
            postgresql_where=text("state IN ('pending', 'delivering')"),
        ),
    )

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("upload_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[int] = org_fk()
    url: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    # [{"at", "status", "error", "durationMs"}], oldest first.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    # Who is sending it now, until when: a worker that dies mid-attempt loses it to the sweeper.
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()  # the job's end: retries count from it
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
