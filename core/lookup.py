"""An org's own row by its id: another org's is as unknown as a missing one (404, never 403)."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import not_found
from core.models.base import Base

Row = TypeVar("Row", bound=Base)  # a table with `id` and `org_id` columns


def org_row(
    session: Session,
    model: type[Row],
    org_id: int,
    row_id: int,
    what: str,
    *,
    for_update: bool = False,
) -> Row:
    """The row, else a `not_found(what)`; `for_update` locks it for the caller's change.

    The org is asked for in the query as well as by row-level security: a session of the
    owner's role sees every org, and must still find only this org's row."""
    columns = model.__table__.c
    query = select(model).where(columns.id == row_id, columns.org_id == org_id)
    if for_update:
        query = query.with_for_update()
    row = session.execute(query).scalar_one_or_none()
    if row is None:
        raise not_found(what)
    return row
