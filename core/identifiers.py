"""Normalising the identifiers customers are matched by, the same way everywhere."""

from __future__ import annotations

import re

_MOBILE_NOISE = re.compile(r"[\s\-.()\[\]]")
_DIGITS_6_15 = re.compile(r"[0-9]{6,15}")
_POSITIVE_INT = re.compile(r"[0-9]{1,18}")


def normalise_mobile(value: str) -> str | None:
    """Digits only (6 to 15), or None when the value is not a mobile number.

    Spaces, dashes, dots, brackets and a leading `+` go; no country code is added or removed,
    and Excel's scientific notation (`9.98877E+09`) is refused rather than guessed at.
    """
    cleaned = value.strip()
    if cleaned.startswith("+"):
        cleaned = cleaned[1:]
    cleaned = _MOBILE_NOISE.sub("", cleaned)
    return cleaned if _DIGITS_6_15.fullmatch(cleaned) else None


def normalise_email(value: str) -> str:
    return value.strip().lower()


def parse_positive_int(value: str) -> int | None:
    """A positive integer that fits a BIGINT, else None."""
    if not _POSITIVE_INT.fullmatch(value):
        return None
    number = int(value)
    return number if number > 0 else None
