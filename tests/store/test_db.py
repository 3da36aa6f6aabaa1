"""Engines: SQLite defaults and pragmas, PostgreSQL URLs, and errors that say what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_meetings.errors import StoreError
from crm_meetings.store import Store, create_engine, default_sqlite_url, describe, ping, upgrade
from crm_meetings.store.db import normalize_url
from crm_meetings.store.tables import CheckpointRow

UNREACHABLE = "postgresql://crm:s3cret-Pa55word@127.0.0.1:1/crm_prod"


def test_default_sqlite_database_is_created_in_its_data_directory_on_first_use(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "nested" / "data"
    url = default_sqlite_url(data_dir)
    assert url == f"sqlite+pysqlite:///{data_dir / 'crm-meetings.db'}"
    assert not data_dir.exists()
    with Store(url) as store:
        ping(store.engine)
    assert (data_dir / "crm-meetings.db").is_file()


def test_sqlite_connections_enforce_foreign_keys_with_wal_and_a_busy_timeout(
    sqlite_url: str,
) -> None:
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 30_000}


def test_sqlite_transactions_are_real_ones_ddl_included(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            with connection.begin() as transaction:
                connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                transaction.rollback()
            assert not sa.inspect(connection).has_table("t")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "given",
    ["postgresql://u@db.example:5433/crm", "postgres://u@db.example:5433/crm"],
)
def test_plain_postgresql_urls_use_psycopg_3(given: str) -> None:
    assert normalize_url(given).drivername == "postgresql+psycopg"
    assert normalize_url(given).host == "db.example"


def test_describe_names_the_host_and_masks_the_password() -> None:
    text = describe(UNREACHABLE)
    assert "127.0.0.1:1" in text
    assert "crm_prod" in text
    assert "s3cret-Pa55word" not in text


def test_unreachable_postgresql_is_a_store_error_naming_the_host_not_the_password() -> None:
    with (
        Store(UNREACHABLE) as store,
        pytest.raises(StoreError) as raised,
        store.transaction() as uow,
    ):
        uow.meetings.find_by_uid("x@y")
    text = str(raised.value)
    assert "Cannot use PostgreSQL database crm_prod on 127.0.0.1:1" in text
    assert "s3cret-Pa55word" not in text
    assert "database server is running" in raised.value.hint
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1") as again:
        upgrade(UNREACHABLE)
    assert "s3cret-Pa55word" not in str(again.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("not a url", "is not a database URL"), ("mysql://u@h/db", "unsupported database")],
)
def test_unusable_urls_are_store_errors(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected):
        create_engine(url)


def test_a_data_directory_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="Cannot create the data directory"):
        create_engine(default_sqlite_url(blocker / "data"))


@pytest.mark.postgres
def test_postgres_url_has_a_schema_of_its_own(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            schema = connection.scalar(sa.text("SELECT current_schema()"))
            tables = connection.scalar(
                sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            )
    finally:
        engine.dispose()
    assert str(schema).startswith("crm_meetings_test_")
    assert tables == 0


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_unreachable_postgresql_skips_but_fails_under_ci(ci: str, outcome: str) -> None:
    env = {**os.environ, "CI": ci, "TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/test"}
    node = f"{__file__}::test_postgres_url_has_a_schema_of_its_own"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", node],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "PostgreSQL is not available to the tests" in result.stdout
    assert "127.0.0.1:1" in result.stdout
    assert result.returncode == (1 if ci else 0)


def test_a_read_only_unit_of_work_neither_waits_for_a_writer_nor_blocks_it(store: Store) -> None:
    """On SQLite ``transaction()`` takes the write lock at BEGIN; ``reading()`` must not, or
    every page read queues behind every write (and behind the other reads)."""
    with store.transaction() as uow:
        uow.checkpoints.set("default", "zoom", "cursor", "before")
    seen: list[str | None] = []
    done = threading.Event()

    def read() -> None:
        with store.reading() as uow:
            seen.append(uow.checkpoints.get("default", "zoom", "cursor"))
        done.set()

    with store.transaction() as uow:
        uow.checkpoints.set("default", "zoom", "cursor", "after")
        uow.flush()
        reader = threading.Thread(target=read)
        reader.start()
        assert done.wait(10), "the reader waited for the writer's lock"
    reader.join()
    assert seen == ["before"], "a reader sees the last committed state"
    with store.reading() as uow:
        assert uow.checkpoints.get("default", "zoom", "cursor") == "after"


def test_a_read_only_unit_of_work_refuses_writes(store: Store) -> None:
    refused = pytest.raises(StoreError, match=r"read-only .* tried to write")
    with refused as statement, store.reading() as uow:
        uow.checkpoints.set("default", "zoom", "cursor", "x")
    assert "Store.transaction()" in (statement.value.hint or "")
    with pytest.raises(StoreError, match="tried to write"), store.reading() as uow:
        uow.session.add(
            CheckpointRow(
                org_id="default",
                source="zoom",
                object_name="o",
                cursor="x",
                updated_at=store.clock(),
            )
        )
    with store.reading() as uow:
        assert uow.checkpoints.list_for_org() == []
