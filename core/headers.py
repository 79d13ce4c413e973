"""Header names: how a name matches a header cell, and which column keys a header row suggests.

One rule for everyone: the API resolves the names given in uploadHeaders with `header_key`,
and the CLI (and, through the API, the web page) maps a header row with `suggest_columns`,
which compares by the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from core.rows import clean


def header_key(name: str) -> str:
    """Header names match case- and space-insensitively: `Mobile No` is `mobileno`.

    The `'` that the error report puts before a formula-like cell is dropped first, so that a
    report uploaded again matches as the original did.
    """
    return "".join(clean(name).split()).casefold()


# The header names each column key is known by, as words: matched whatever their case, and
# written together, with spaces, or joined by `_` or `-` (`Coupon Code`, `coupon_code`).
_NAMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "redeemedDateInMillis": (
        ("redeemed", "date", "in", "millis"),
        ("redemption", "date", "in", "millis"),
        ("redeemed", "date"),
        ("redemption", "date"),
        ("redeemed", "on"),
    ),
    "redeemedAt": (("redeemed", "at"), ("till",), ("till", "id"), ("till", "code")),
    "mobile": (
        ("mobile",),
        ("mobile", "no"),
        ("mobile", "number"),
        ("phone",),
        ("phone", "number"),
    ),
    "email": (("email",), ("email", "id"), ("email", "address")),
    "externalId": (("external", "id"),),
    "userId": (("user", "id"),),
    "couponId": (("coupon", "id"),),
    "couponCode": (("coupon", "code"), ("code",)),
    "billId": (("bill", "id"),),
    "billNumber": (("bill", "number"), ("bill", "no")),
    "details": (("details",), ("detail",)),
}
_JOINERS = ("", "_", "-")

HEADER_ALIASES: dict[str, str] = {
    joiner.join(words): key
    for key, names in _NAMES.items()
    for words in names
    for joiner in _JOINERS
}


@dataclass(frozen=True)
class Suggestion:
    """The column keys a header row names: each key's column, and the keys named twice."""

    columns: dict[str, int] = field(default_factory=dict)
    clashes: dict[str, list[int]] = field(default_factory=dict)


def suggest_columns(header: Sequence[str]) -> Suggestion:
    """The uploadHeaders that a header row suggests, by the names of its cells."""
    seen: dict[str, list[int]] = {}
    for index, cell in enumerate(header):
        key = HEADER_ALIASES.get(header_key(cell))
        if key is not None:
            seen.setdefault(key, []).append(index)
    return Suggestion(
        columns={key: found[0] for key, found in seen.items() if len(found) == 1},
        clashes={key: found for key, found in seen.items() if len(found) > 1},
    )
