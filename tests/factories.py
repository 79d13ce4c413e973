"""Typed factories for test data, straight into Postgres (bulk ones with COPY)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import psycopg

from core.db import transaction
from core.models import Coupon, CouponSeries, Customer

SAMPLE_MS = 1_603_128_622_000  # 2020-10-19, the samples' redemption time


def create_series(
    org_id: int,
    *,
    name: str = "series",
    max_redemptions_per_coupon: int | None = 1,
    same_user_multiple_redeem: bool = False,
    max_redemptions_per_customer: int | None = None,
    valid_from: datetime | None = None,
    valid_till: datetime | None = None,
    any_user: bool = False,
    allowed_till_ids: list[str] | None = None,
) -> int:
    with transaction(org_id) as session:
        series = CouponSeries(
            org_id=org_id,
            name=name,
            max_redemptions_per_coupon=max_redemptions_per_coupon,
            same_user_multiple_redeem=same_user_multiple_redeem,
            max_redemptions_per_customer=max_redemptions_per_customer,
            valid_from=valid_from,
            valid_till=valid_till,
            any_user=any_user,
            allowed_till_ids=allowed_till_ids,
        )
        session.add(series)
        session.flush()
        return series.id


def create_customer(
    org_id: int,
    *,
    mobile: str | None = None,
    email: str | None = None,
    external_id: str | None = None,
) -> int:
    with transaction(org_id) as session:
        customer = Customer(org_id=org_id, mobile=mobile, email=email, external_id=external_id)
        session.add(customer)
        session.flush()
        return customer.id


def create_coupon(
    org_id: int,
    series_id: int,
    code: str,
    *,
    issued_to: int | None = None,
    expires_at: datetime | None = None,
    revoked_at: datetime | None = None,
) -> int:
    with transaction(org_id) as session:
        coupon = Coupon(
            org_id=org_id,
            series_id=series_id,
            code=code,
            issued_to_customer_id=issued_to,
            expires_at=expires_at,
            revoked_at=revoked_at,
        )
        session.add(coupon)
        session.flush()
        return coupon.id


def bulk_customers_and_coupons(
    database_url: str, org_id: int, series_id: int, count: int, *, mobile_base: int
) -> None:
    """`count` customers (mobiles mobile_base + i) each with one coupon C{i:08d} issued to them."""
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY customers (org_id, mobile) FROM STDIN") as copy:
            for i in range(count):
                copy.write_row((org_id, str(mobile_base + i)))
        cur.execute(
            """
                INSERT INTO coupons (org_id, series_id, code, issued_to_customer_id)
                SELECT %s, %s, 'C' || lpad((mobile::bigint - %s)::text, 8, '0'), id
                FROM customers WHERE org_id = %s
                """,
            (org_id, series_id, mobile_base, org_id),
        )


def redeemable_file(
    path: Path,
    database_url: str,
    org_id: int,
    series_id: int,
    rows: int,
    *,
    mobile_base: int,
    extra: Iterable[Sequence[object]] = (),
) -> Path:
    """`rows` customers with a coupon each (bulk_customers_and_coupons) and a CSV (date, till,
    mobile, code) redeeming every one once, then the `extra` rows."""
    bulk_customers_and_coupons(database_url, org_id, series_id, rows, mobile_base=mobile_base)
    good = ((SAMPLE_MS + i, "T1", mobile_base + i, f"C{i:08d}") for i in range(rows))
    return write_csv(path, ["date", "till", "mobile", "code"], itertools.chain(good, extra))


def write_csv(path: Path, header: Sequence[str] | None, rows: Iterable[Sequence[object]]) -> Path:
    with path.open("w", newline="") as handle:
        if header is not None:
            handle.write(",".join(header) + "\n")
        for row in rows:
            handle.write(",".join(str(cell) for cell in row) + "\n")
    return path


def create_job(
    org_id: int,
    series_id: int,
    lines: Iterable[str],
    *,
    upload_headers: str = (
        '{"redeemedDateInMillis": 0, "redeemedAt": 1, "mobile": 2, "couponCode": 3}'
    ),
    customer: str = "MOBILE",
    coupon: str = "COUPON_CODE",
) -> int:
    """A QUEUED job over `lines` (header included), made in core and never enqueued."""
    from core import uploads
    from core.storage import get_storage

    sink = uploads.FileSink(get_storage(), org_id)
    for line in lines:
        sink.write(line.encode() + b"\n")
    form = uploads.UploadForm(
        fields={
            "customerIdentifier": customer,
            "couponIdentifier": coupon,
            "uploadHeaders": upload_headers,
        },
        file_name="made-in-test.csv",
    )
    sink.commit()
    plan = uploads.judge(form, sink)
    with transaction(org_id) as session:
        return uploads.create_job(
            session,
            org_id=org_id,
            series_id=series_id,
            plan=plan,
            sink=sink,
            file_name="made-in-test.csv",
            idempotency_key=None,
            request_fingerprint=None,
        ).id
