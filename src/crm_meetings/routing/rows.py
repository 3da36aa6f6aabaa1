"""Reading one row for a change: fresh from the database, locked where that helps."""

from __future__ import annotations

from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from crm_meetings.errors import CrmMeetingsError

__all__ = ["first", "one"]

R = TypeVar("R")


def first(session: orm.Session, query: sa.Select[R], *, lock: bool = False) -> R | None:
    """The first row of ``query``, reloaded (not the identity map's copy).

    With ``lock``, PostgreSQL locks it ``FOR UPDATE`` until the transaction ends; SQLite
    needs no lock, its writers are serialised by ``BEGIN IMMEDIATE``.
    """
    query = query.execution_options(populate_existing=True)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).first()


def one(
    session: orm.Session,
    query: sa.Select[R],
    missing: CrmMeetingsError,
    *,
    lock: bool = False,
) -> R:
    """Like :func:`first`, raising ``missing`` when there is no row."""
    row = first(session, query, lock=lock)
    if row is None:
        raise missing
    return row
