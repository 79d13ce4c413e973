from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Float, Identity, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at_column, org_fk


class Org(Base):
    __tablename__ = "orgs"
    __table_args__ = (
        CheckConstraint(
            "default_max_error_rate BETWEEN 0 AND 1", name="default_max_error_rate_share"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    # Signs the org's completion webhooks (HMAC-SHA256): made on first need, shown to the
    # org's admin by `bulkredeem orgs webhook-secret`.
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    # The org's settings (GET/PATCH /v1/org, migration 0011): a country calling code ("91") for
    # national mobiles, an IANA time zone for workbook dates, the guard's default share.
    default_country_code: Mapped[str | None] = mapped_column(String(4))
    time_zone: Mapped[str | None] = mapped_column(Text)
    default_max_error_rate: Mapped[float | None] = mapped_column(Float)


class ApiKey(Base):
    __tablename__ = "api_keys"
    # Keys are found by their visible prefix, then told apart in constant time (core/keys.py).
    __table_args__ = (Index("ix_api_keys_prefix", "prefix"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = org_fk()
    # The visible start of the key, for telling keys apart in listings; never enough to use it.
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    # SHA-256 of the whole key, hex: keys are high-entropy, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
