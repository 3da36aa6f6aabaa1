"""Statements built once per dialect, for the repositories that share their shape.

``INSERT … ON CONFLICT DO NOTHING`` and ``… DO UPDATE`` are spelled by each dialect's own
``insert``; building them on every call made SQLAlchemy compile them every time, so they
are built once for SQLite and once for PostgreSQL, and :meth:`ByDialect.on` picks the one
for a session's database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

__all__ = ["ByDialect", "insert_ignoring", "upsert"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ByDialect(Generic[T]):
    """One value per supported database."""

    sqlite: T
    postgresql: T

    def on(self, session: orm.Session) -> T:
        """The value for the database ``session`` is bound to."""
        return self.postgresql if session.get_bind().dialect.name == "postgresql" else self.sqlite


def insert_ignoring(
    table: sa.Table, unique: Sequence[str], *, returning: sa.ColumnElement[Any] | None = None
) -> ByDialect[Insert]:
    """``INSERT INTO table … ON CONFLICT (unique) DO NOTHING`` (``RETURNING returning``).

    Executed with a list of rows, SQLAlchemy sends them as one multi-row INSERT; a row whose
    key is taken, or repeated earlier in the list, is skipped (and not returned).
    """

    def build(insert: Callable[[sa.Table], sqlite.Insert | postgresql.Insert]) -> Insert:
        statement = insert(table).on_conflict_do_nothing(index_elements=list(unique))
        return statement if returning is None else statement.returning(returning)

    return ByDialect(sqlite=build(sqlite.insert), postgresql=build(postgresql.insert))


def upsert(table: sa.Table, unique: Sequence[str], *, update: Sequence[str]) -> ByDialect[Insert]:
    """``INSERT INTO table … ON CONFLICT (unique) DO UPDATE`` setting each column of
    ``update`` to the value the row would have been inserted with."""

    def build(insert: Callable[[sa.Table], sqlite.Insert | postgresql.Insert]) -> Insert:
        statement = insert(table)
        changes = {column: statement.excluded[column] for column in update}
        return statement.on_conflict_do_update(index_elements=list(unique), set_=changes)

    return ByDialect(sqlite=build(sqlite.insert), postgresql=build(postgresql.insert))
