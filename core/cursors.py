"""The one cursor format of the paged lists: newest first, a page points below an id."""

from __future__ import annotations

import base64
import binascii
import json

from core.errors import invalid
from core.limits import MAX_ID

# A cursor this API gave out is a few dozen characters; anything much longer is not one.
MAX_CURSOR_LENGTH = 200


def encode(before: int) -> str:
    """The cursor of the page below `before` (the id of this page's last item)."""
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode()


def decode(cursor: str) -> int:
    """The id a cursor points below; anything but a cursor this API gave out is a 400."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _forged()
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as exc:
        raise _forged() from exc
    if not isinstance(value, dict) or set(value) != {"before"}:
        raise _forged()
    before = value["before"]
    # bool is an int to Python, and an id past BIGINT would fail in the database instead.
    if type(before) is not int or not 0 < before <= MAX_ID:
        raise _forged()
    return before


def _forged() -> Exception:
    return invalid("cursor", "cursor is not one this API gave out")
