"""The data rows are checked against: customers, coupon series, coupons, redemptions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, column_property, mapped_column

from core.models.base import Base, created_at_column, org_fk


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        # A chunk finds customers by these and reads only the id: INCLUDE makes the look-up
        # index-only (migration 0007).
        UniqueConstraint("org_id", "external_id", postgresql_include=["id"]),
        UniqueConstraint("org_id", "mobile", postgresql_include=["id"]),
        UniqueConstraint("org_id", "email", postgresql_include=["id"]),
        UniqueConstraint("id", "org_id"),  # redemptions' customer check, index-only
    )

    # The customer's id is the `userId` of the API; explicit ids may be given (by default).
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    org_id: Mapped[int] = org_fk()
    external_id: Mapped[str | None] = mapped_column(Text)
    mobile: Mapped[str | None] = mapped_column(Text)  # normalised digits
    email: Mapped[str | None] = mapped_column(Text)  # lower-cased
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class CouponSeries(Base):
    __tablename__ = "coupon_series"
    __table_args__ = (
        CheckConstraint(
            "max_redemptions_per_coupon IS NULL OR max_redemptions_per_coupon > 0",
            name="max_per_coupon_positive",
        ),
        CheckConstraint(
            "max_redemptions_per_customer IS NULL OR max_redemptions_per_customer > 0",
            name="max_per_customer_positive",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    org_id: Mapped[int] = org_fk()
    name: Mapped[str] = mapped_column(Text, nullable=False)
    max_redemptions_per_coupon: Mapped[int | None] = mapped_column(Integer)
    same_user_multiple_redeem: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    max_redemptions_per_customer: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_till: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    any_user: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    allowed_till_ids: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = created_at_column()
    # Deletes of its coupons or of its org's customers, counted by triggers (migration 0007):
    # a chunk that resolved its rows before such a delete resolves them again.
    reference_deletions: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )


class CouponCounter(Base):
    """How often a coupon was redeemed, kept apart from the wide, many-indexed coupons row.

    Updating a counter on `coupons` rewrote the row and all its index entries (~10 ms per 1,000
    rows); this narrow table with one index takes an upsert at a fifth of that. A row exists
    once a coupon is first redeemed; it changes only in the transaction that inserts the
    redemptions and holds its series' row lock. No foreign key, deliberately: its check cost
    more than the upsert; deleting a coupon deletes its counter (migration 0007).
    """

    __tablename__ = "coupon_counters"
    __table_args__ = (
        CheckConstraint("redemption_count >= 0", name="redemption_count_non_negative"),
    )

    coupon_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    redemption_count: Mapped[int] = mapped_column(Integer, nullable=False)


class Coupon(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        # Found by code, a coupon gives what a chunk checks without a heap visit.
        UniqueConstraint(
            "series_id",
            "code",
            postgresql_include=[
                "id",
                "org_id",
                "issued_to_customer_id",
                "expires_at",
                "revoked_at",
            ],
        ),
        UniqueConstraint("id", "series_id", "org_id"),  # redemptions' coupon check, index-only
        # A customer's delete finds its issued coupons (the foreign key's SET NULL).
        Index("ix_coupons_issued_to_customer_id", "issued_to_customer_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    org_id: Mapped[int] = org_fk()
    series_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("coupon_series.id", ondelete="CASCADE"), nullable=False
    )
    code: Mapped[str] = mapped_column(Text, nullable=False)
    issued_to_customer_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("customers.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    # Read-only here (0 before the first redemption); written only by the chunk upsert.
    redemption_count: Mapped[int] = column_property(
        select(func.coalesce(func.max(CouponCounter.redemption_count), 0))
        .where(CouponCounter.coupon_id == id)
        .scalar_subquery()
    )


class RedemptionFields:
    """What a redemption records, kept alike by the redemptions and their archive."""

    series_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    coupon_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    customer_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The job that applied it. No foreign key: only the worker writes it, with the id of the
    # job it holds locked, and jobs are never deleted (migration 0003 says what the check cost).
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    row_number: Mapped[int | None] = mapped_column(Integer)
    redeemed_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    till_id: Mapped[str] = mapped_column(Text, nullable=False)
    # Empty, never NULL, so that empty bill fields compare equal in the natural key.
    bill_id: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    bill_number: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    details: Mapped[str | None] = mapped_column(Text)


class Redemption(RedemptionFields, Base):
    __tablename__ = "redemptions"
    __table_args__ = (
        # The same redemption recorded twice is a duplicate (790), whichever job brought it. (A
        # chunk is never applied twice: its commit checks the job's checkpoint, core/apply.py.)
        UniqueConstraint(
            "coupon_id",
            "redeemed_ms",
            "till_id",
            "bill_id",
            "bill_number",
            name="uq_redemptions_natural_key",
        ),
        # A customer's redemptions in a series (its limit), and all of them (the cascade).
        Index("ix_redemptions_customer_id_series_id", "customer_id", "series_id"),
        # A job's redemptions in file order: its successes report and its revert (0012).
        Index("ix_redemptions_job_id_row_number", "job_id", "row_number"),
        # No foreign keys: their per-row checks locked each coupon and customer and cost more
        # than every index here. Triggers of migration 0007 check each statement's rows (the
        # coupon in the series and org, the customer in the org) and cascade deletes.
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = created_at_column()


class RevertedRedemption(RedemptionFields, Base):
    """A redemption a revert removed, as it was, with the revert job and when (migration 0012).

    Nothing a revert undoes is lost: the import's successes report reads its rows from here,
    marked with the revert's id.
    """

    __tablename__ = "reverted_redemptions"
    __table_args__ = (
        Index("ix_reverted_redemptions_job_id_row_number", "job_id", "row_number"),
        Index("ix_reverted_redemptions_reverted_by_job_id", "reverted_by_job_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    org_id: Mapped[int] = org_fk()
    # When the redemption was recorded, as it was.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    reverted_by_job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("upload_jobs.id", ondelete="CASCADE"), nullable=False
    )
    reverted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
