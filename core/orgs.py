"""The org's settings (GET/PATCH /v1/org): its country calling code, time zone and default guard.

DESIGN.md, "Org settings". Each value is checked here, where every caller (the API, a test)
gets the same answer: a country calling code known to libphonenumber, an IANA zone name, a
share from 0 to 1. The app role may update only these columns, and only of its own org
(migration 0011, policy org_isolation).
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import phonenumbers
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import DomainError, ErrorKind, FieldProblem, not_found
from core.models import Org

# The JSON names of the settings, and their columns.
COLUMNS = {
    "defaultCountryCode": "default_country_code",
    "timeZone": "time_zone",
    "defaultMaxErrorRate": "default_max_error_rate",
}


@dataclass(frozen=True)
class OrgSettings:
    default_country_code: str | None
    time_zone: str | None
    default_max_error_rate: float | None


def unprocessable(name: str, message: str) -> DomainError:
    return DomainError(ErrorKind.UNPROCESSABLE, message, [FieldProblem(name, message)])


def country_code(value: object) -> str:
    """A country calling code as digits ("91"; "+91" is the same), known to libphonenumber."""
    text = value.strip().removeprefix("+") if isinstance(value, str) else None
    if not text or not text.isascii() or not text.isdigit() or len(text) > 3:
        raise unprocessable(
            "defaultCountryCode",
            f"defaultCountryCode must be a country calling code of 1 to 3 digits, such as "
            f'"91", not {value!r}',
        )
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(text))
    if not regions:
        raise unprocessable(
            "defaultCountryCode", f"defaultCountryCode {text!r} is no country's calling code"
        )
    if phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in regions:
        # 800, 870, 882, ...: numbers of no country, where a national number means nothing.
        raise unprocessable(
            "defaultCountryCode",
            f"defaultCountryCode {text!r} is a non-geographic calling code, not a country's",
        )
    return str(int(text))


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(value: object) -> str:
    """An IANA time zone name ("Asia/Kolkata"), as the zone database spells it."""
    if not isinstance(value, str) or not value.strip():
        raise unprocessable(
            "timeZone",
            f'timeZone must be an IANA time zone name, such as "Asia/Kolkata", not {value!r}',
        )
    name = value.strip()
    if name in _zones():
        return name
    near = [zone for zone in _zones() if zone.lower() == name.lower()]
    hint = f"; did you mean {near[0]!r}?" if near else ' (such as "Asia/Kolkata")'
    raise unprocessable("timeZone", f"timeZone {name!r} is not an IANA time zone name{hint}")


def max_error_rate(value: object) -> float:
    """A share from 0 to 1: 0.05 stops a job when more than 5% of its rows fail."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0 <= number <= 1:
        raise unprocessable(
            "defaultMaxErrorRate",
            f"defaultMaxErrorRate must be a number from 0 to 1 (0.05 for 5%), not {value!r}",
        )
    return float(number)


_CHECKS = {
    "defaultCountryCode": country_code,
    "timeZone": time_zone,
    "defaultMaxErrorRate": max_error_rate,
}


def org_settings(session: Session, org_id: int) -> OrgSettings:
    row = session.execute(
        select(Org.default_country_code, Org.time_zone, Org.default_max_error_rate).where(
            Org.id == org_id
        )
    ).one_or_none()
    if row is None:
        raise not_found("org")
    return OrgSettings(row[0], row[1], None if row[2] is None else float(row[2]))


def change_settings(session: Session, org_id: int, changes: Mapping[str, object]) -> OrgSettings:
    """Set the settings named in `changes` (by their JSON names; None clears one), leave the
    others as they are, and answer them all."""
    values: dict[str, object] = {}
    for name, value in changes.items():
        check = _CHECKS.get(name)
        if check is None:
            raise unprocessable(name, f"{name} is not a setting; settings: {', '.join(COLUMNS)}")
        values[COLUMNS[name]] = None if value is None else check(value)
    if values:
        session.execute(update(Org).where(Org.id == org_id).values(**values))
    return org_settings(session, org_id)
