"""The org's own settings: GET and PATCH /v1/org (DESIGN.md, "Org settings")."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from api.deps import OrgTx
from api.errors import ERROR_RESPONSES
from api.schemas_reference import RequestBody, ResponseBody
from core import orgs

router = APIRouter(prefix="/v1/org", tags=["org"], responses=ERROR_RESPONSES)


class OrgSettingsIn(RequestBody):
    """Each key optional: an absent one stays as it is, a null clears it."""

    # Strict types here (a string, a number); what they must say is core/orgs.py's to judge,
    # so that the refusals name the value and the rule, as a 422.
    default_country_code: str | None = Field(default=None, examples=["91"])
    time_zone: str | None = Field(default=None, examples=["Asia/Kolkata"])
    default_max_error_rate: float | None = Field(default=None, examples=[0.05])


class OrgSettingsOut(ResponseBody):
    default_country_code: str | None
    time_zone: str | None
    default_max_error_rate: float | None

    @classmethod
    def of(cls, settings: orgs.OrgSettings) -> OrgSettingsOut:
        return cls(
            default_country_code=settings.default_country_code,
            time_zone=settings.time_zone,
            default_max_error_rate=settings.default_max_error_rate,
        )


@router.get("")
def get_org(tx: OrgTx) -> OrgSettingsOut:
    """The org's settings."""
    return OrgSettingsOut.of(orgs.org_settings(tx.session, tx.org_id))


@router.patch("")
def patch_org(body: OrgSettingsIn, tx: OrgTx) -> OrgSettingsOut:
    """Change the settings sent (null clears one); the others stay."""
    # Only the keys sent: an explicit null is sent (it clears), an absent key is not.
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    return OrgSettingsOut.of(orgs.change_settings(tx.session, tx.org_id, changes))
