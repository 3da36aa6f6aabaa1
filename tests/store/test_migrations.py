"""Alembic migrations on SQLite and PostgreSQL: up, down, up again, and in step with tables."""

from __future__ import annotations

import importlib
import io
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from crm_meetings.cli import TABLE_MODULES
from crm_meetings.errors import StoreError
from crm_meetings.store import Store, create_engine, current, downgrade, head, upgrade
from crm_meetings.store.migrate import MIGRATIONS_DIR, alembic_config
from crm_meetings.store.tables import Base

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import MeetingFactory


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(store_url: str) -> None:
    assert current(store_url) is None
    assert upgrade(store_url) == head()
    assert current(store_url) == head()
    assert set(Base.metadata.tables) <= _tables(store_url)

    assert downgrade(store_url, "base") is None
    assert _tables(store_url) == {"alembic_version"}

    assert upgrade(store_url, "0001") == "0001"
    assert upgrade(store_url) == head()
    assert upgrade(store_url) == head()  # already there: nothing to do


def test_the_first_revision_is_0001_and_migrations_ship_with_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    assert head()  # 0001, or a later revision that builds on it


def _ignore_other_tables(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Tables nobody declared (alembic_version) are not drift."""
    return not (type_ == "table" and reflected and name not in Base.metadata.tables)


# Modules above the store declare their own rows on Base; load them so drift covers them
# (the same list ``db adopt-org`` loads).


def test_migrations_create_exactly_the_declared_tables(store_url: str) -> None:
    for module in TABLE_MODULES:
        importlib.import_module(module)
    assert {"outbox_messages", "job_claims", "leases"} <= set(Base.metadata.tables)
    upgrade(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "include_object": _ignore_other_tables},
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_version_table_lands_in_the_connection_schema(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            schema = connection.scalar(sa.text("SELECT current_schema()"))
            where = connection.scalars(
                sa.text(
                    "SELECT table_schema FROM information_schema.tables "
                    "WHERE table_name = 'alembic_version' AND table_schema <> 'public'"
                )
            ).all()
    finally:
        engine.dispose()
    assert str(schema).startswith("crm_meetings_test_")
    assert schema in where


def test_unknown_revision_is_a_store_error(sqlite_url: str) -> None:
    with pytest.raises(StoreError, match="Cannot migrate") as raised:
        upgrade(sqlite_url, "9999")
    assert "base" in raised.value.hint


def test_a_store_that_was_never_upgraded_says_to_run_db_upgrade(store_url: str) -> None:
    with Store(store_url) as store:
        with pytest.raises(StoreError, match="schema revision none") as raised:
            store.check()
        assert "crm-meetings db upgrade" in raised.value.hint
        with (
            pytest.raises(StoreError, match="no crm-meetings tables") as missing,
            store.transaction() as uow,
        ):
            uow.meetings.find_by_uid("x@y")
        assert "crm-meetings db upgrade" in missing.value.hint
        assert store.upgrade() == head()
        assert store.check() == head()


def test_an_in_memory_store_migrates_through_its_own_engine(make_meeting: MeetingFactory) -> None:
    meeting = make_meeting()
    with Store("sqlite://") as store:
        assert store.upgrade() == head()
        with store.transaction() as uow:
            uow.meetings.add(meeting)
            foreign_keys = uow.session.execute(sa.text("PRAGMA foreign_keys")).scalar()
        with store.transaction() as uow:
            assert uow.meetings.get(meeting.id) == meeting
    assert foreign_keys == 1  # switched back on after the migration


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///unused.db", "CREATE TABLE meetings"),
        ("postgresql://dba@db.example/crm", "TIMESTAMP WITH TIME ZONE"),
    ],
)
def test_offline_mode_renders_sql_for_a_dba_without_connecting(url: str, expected: str) -> None:
    config = alembic_config(url)
    config.output_buffer = io.StringIO()
    command.upgrade(config, "0001", sql=True)
    script = config.output_buffer.getvalue()
    assert expected in script
    assert "CONSTRAINT uq_meetings_org_id_crm_crm_record_id UNIQUE" in script
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in script


def test_a_database_from_a_newer_release_says_to_upgrade_crm_meetings(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    with Store(sqlite_url) as store:
        with store.transaction() as uow:
            uow.session.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(StoreError, match="does not know") as raised:
            store.check()
    assert "upgrade crm-meetings" in raised.value.hint
