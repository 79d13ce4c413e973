from core.models.base import Base
from core.models.jobs import JOB_STATUSES, DryRunRedemption, JobRowError, UploadJob
from core.models.reference import (
    Coupon,
    CouponCounter,
    CouponSeries,
    Customer,
    Redemption,
    RevertedRedemption,
)
from core.models.tenancy import ApiKey, Org
from core.models.webhooks import DELIVERY_STATES, WebhookDelivery

__all__ = [
    "DELIVERY_STATES",
    "JOB_STATUSES",
    "ApiKey",
    "Base",
    "Coupon",
    "CouponCounter",
    "CouponSeries",
    "Customer",
    "DryRunRedemption",
    "JobRowError",
    "Org",
    "Redemption",
    "RevertedRedemption",
    "UploadJob",
    "WebhookDelivery",
]
