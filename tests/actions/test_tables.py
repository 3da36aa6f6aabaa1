"""Migration 0004 and the actions' ORM rows agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crm_meetings.actions import tables
from crm_meetings.store import create_engine, downgrade, upgrade
from crm_meetings.store.tables import Base

OURS = {
    tables.ActionRequestRow.__tablename__,
    tables.ActionAuditRow.__tablename__,
    tables.MeetingConferencingRow.__tablename__,
}


def _drift(store_url: str) -> list[object]:
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            ours = [t for t in Base.metadata.sorted_tables if t.name in OURS]
            found: list[object] = []
            for difference in compare_metadata(context, Base.metadata):
                text = repr(difference)
                if any(name in text for name in (t.name for t in ours)):
                    found.append(difference)
            return found
    finally:
        engine.dispose()


def test_migration_0004_creates_exactly_the_action_tables(store_url: str) -> None:
    upgrade(store_url, "0004")
    assert _drift(store_url) == []


def test_migration_0004_downgrades_cleanly(store_url: str) -> None:
    upgrade(store_url, "0004")
    downgrade(store_url, "0003")
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            present = set(connection.dialect.get_table_names(connection))
    finally:
        engine.dispose()
    assert not OURS & present
    upgrade(store_url, "0004")
