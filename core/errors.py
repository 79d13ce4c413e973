"""Domain errors: each carries the HTTP-agnostic kind the API maps to a status code."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ErrorKind(Enum):
    INVALID = "invalid"  # the request is wrong (400)
    UNPROCESSABLE = "unprocessable"  # well-formed but semantically wrong items (422)
    NOT_FOUND = "not_found"  # unknown, or another org's (404)
    CONFLICT = "conflict"  # clashes with existing data (409)
    UNAUTHENTICATED = "unauthenticated"  # no valid key (401)
    TOO_LARGE = "too_large"  # over a size or row limit (413)
    UNSUPPORTED_MEDIA = "unsupported_media"  # not a text file (415)
    RATE_LIMITED = "rate_limited"  # too many requests for now (429)
    GONE = "gone"  # was there, and is no longer kept (410)


@dataclass
class FieldProblem:
    field: str
    message: str


@dataclass
class DomainError(Exception):
    kind: ErrorKind
    message: str
    problems: list[FieldProblem] = field(default_factory=list)
    retry_after: float | None = None  # seconds, for RATE_LIMITED

    def __str__(self) -> str:
        return self.message


def invalid(fieldname: str, message: str) -> DomainError:
    return DomainError(ErrorKind.INVALID, message, [FieldProblem(fieldname, message)])


def not_found(what: str) -> DomainError:
    return DomainError(ErrorKind.NOT_FOUND, f"{what} not found")
