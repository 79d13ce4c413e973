"""Checks shared by the reference-data services: each problem named by its item's JSON field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import any_, literal
from sqlalchemy.dialects.postgresql import ARRAY

from core.errors import DomainError, ErrorKind, FieldProblem
from core.identifiers import normalise_email, normalise_mobile
from core.limits import MAX_BATCH, MAX_IDENTIFIER

PROBLEMS_REPORTED = 100
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class Problems:
    """The bad items of a request, collected so that one answer names them all (up to a cap)."""

    def __init__(self) -> None:
        self.reported: list[FieldProblem] = []
        self.count = 0

    def add(self, field: str, message: str) -> None:
        self.count += 1
        if len(self.reported) < PROBLEMS_REPORTED:
            self.reported.append(FieldProblem(field, message))

    def raise_if_any(self, kind: ErrorKind = ErrorKind.UNPROCESSABLE) -> None:
        if not self.reported:
            return
        first = self.reported[0]
        message = f"{first.field}: {first.message}"
        if self.count > 1:
            message += f" (and {self.count - 1} more)"
        raise DomainError(kind, message, list(self.reported))


def unprocessable(field: str, message: str) -> DomainError:
    return DomainError(
        ErrorKind.UNPROCESSABLE, f"{field}: {message}", [FieldProblem(field, message)]
    )


def check_batch(size: int, field: str) -> None:
    if size > MAX_BATCH:
        raise unprocessable(field, f"at most {MAX_BATCH} items per request, not {size}")


def clean_text(value: str | None, field: str, problems: Problems, max_length: int) -> str | None:
    """Trimmed text, None when absent or blank (upload rows trim their fields the same way)."""
    if value is None:
        return None
    cleaned = value.strip()
    if not cleaned:
        return None
    if len(cleaned) > max_length:
        problems.add(field, f"at most {max_length} characters")
        return None
    if "\x00" in cleaned:
        problems.add(field, "must not contain NUL characters")
        return None
    return cleaned


def clean_mobile(value: str | None, field: str, problems: Problems) -> str | None:
    cleaned = clean_text(value, field, problems, MAX_IDENTIFIER)
    if cleaned is None:
        return None
    digits = normalise_mobile(cleaned)
    if digits is None:
        problems.add(
            field,
            f"{cleaned!r} is not a mobile number: 6 to 15 digits, with optional spaces, "
            "dashes, dots, brackets and a leading +",
        )
    return digits


def clean_email(value: str | None, field: str, problems: Problems) -> str | None:
    cleaned = clean_text(value, field, problems, MAX_IDENTIFIER)
    if cleaned is None:
        return None
    if not _EMAIL.fullmatch(cleaned):
        problems.add(field, f"{cleaned!r} is not an email address")
        return None
    return normalise_email(cleaned)


def clean_instant(value: datetime | str | None, field: str, problems: Problems) -> datetime | None:
    """An ISO 8601 date and time as an aware datetime, UTC when it carries no offset."""
    if value is None:
        return None
    if isinstance(value, str):
        cleaned = value.strip()
        try:
            date.fromisoformat(cleaned)
        except ValueError:
            pass
        else:
            # An inclusive bound given as a bare date could mean its first or its last instant;
            # refuse rather than guess.
            problems.add(field, f"{cleaned!r} has no time: give e.g. {cleaned}T00:00:00Z")
            return None
        try:
            value = datetime.fromisoformat(cleaned)
        except ValueError:
            problems.add(field, f"{cleaned!r} is not an ISO 8601 date and time")
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        problems.add(field, "out of range")
        return None


def any_of(values: Sequence[Any], element_type: Any) -> Any:
    """`= ANY(:array)`: one bind parameter for a whole batch, however large."""
    return any_(literal(list(values), ARRAY(element_type)))
