"""Engines for the store: SQLite (the embedded default) and PostgreSQL (production).

SQLite connections get foreign keys, WAL journaling and a busy timeout, and SQLAlchemy
emits ``BEGIN IMMEDIATE`` itself, so every transaction really is one (the sqlite3
driver's legacy mode would autocommit DDL and let a later writer fail on a stale read).
Failures to reach the database become :class:`~crm_meetings.errors.StoreError` naming the
database with its password masked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine

from crm_meetings.errors import StoreError

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "DEFAULT_DB_FILENAME",
    "create_engine",
    "default_sqlite_url",
    "describe",
    "normalize_url",
    "ping",
    "translate_errors",
]

DEFAULT_DB_FILENAME: Final = "crm-meetings.db"
BUSY_TIMEOUT_SECONDS: Final = 30
#: the execution option (and session info key) of a read-only unit of work
READ_ONLY_OPTION: Final = "crm_meetings_read_only"
_UNDEFINED_TABLE: Final = "42P01"  # PostgreSQL SQLSTATE undefined_table
_UPGRADE_HINT: Final = "Run `crm-meetings db upgrade` to create or update the tables."


def default_sqlite_url(data_dir: Path) -> str:
    """The URL of the embedded SQLite database ``crm-meetings.db`` in ``data_dir``."""
    return str(
        URL.create(
            "sqlite+pysqlite", database=str(data_dir.expanduser().absolute() / DEFAULT_DB_FILENAME)
        )
    )


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` (or ``postgres://``) is rewritten to psycopg 3."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise StoreError(
            f"{url!r} is not a database URL",
            hint="Use sqlite:///path/to/crm-meetings.db or postgresql://user@host:5432/db.",
        ) from error
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    return parsed


def describe(url: str | URL) -> str:
    """The database named for a human: the URL with its password masked."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite database {parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return (
        f"PostgreSQL database {parsed.database or '?'!s} on {host}{port} "
        f"({parsed.render_as_string(hide_password=True)})"
    )


def _is_file_database(url: URL) -> bool:
    database = url.database or ""
    return bool(database) and database != ":memory:" and not database.startswith("file:")


def create_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url``; for a SQLite file, its directory is created on first use."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo=echo)
    if parsed.get_backend_name() != "postgresql":
        raise StoreError(
            f"{describe(parsed)}: unsupported database {parsed.get_backend_name()!r}",
            hint="Use SQLite (the default) or PostgreSQL (postgresql://…).",
        )
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 10
    return sa.create_engine(parsed, echo=echo, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    file_based = _is_file_database(url)
    if file_based:
        directory = Path(str(url.database)).expanduser().parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"Cannot create the data directory {directory} for {describe(url)}: {error}",
                hint="Choose a writable data directory, or set [store].url.",
            ) from error
    engine = sa.create_engine(url, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, see _on_begin
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
            if file_based:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a second writer waits (busy timeout)
        # and then reads fresh rows, instead of failing on a snapshot it cannot upgrade.
        # A read-only unit of work (Store.reading) takes no lock: WAL readers never wait.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _reason(error: exc.DBAPIError) -> str:
    text = str(error.orig) if error.orig is not None else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error.orig).__name__


def _missing_table(error: exc.DBAPIError) -> bool:
    if getattr(error.orig, "sqlstate", None) == _UNDEFINED_TABLE:
        return True
    return "no such table" in str(error.orig)


@contextmanager
def translate_errors(url: str | URL) -> Iterator[None]:
    """Turn "cannot connect", "locked" and "no such table" into :class:`StoreError`."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError, exc.ProgrammingError) as error:
        if _missing_table(error):
            raise StoreError(
                f"{describe(url)} has no crm-meetings tables yet ({_reason(error)})",
                hint=_UPGRADE_HINT,
            ) from error
        if isinstance(error, exc.ProgrammingError):
            raise
        raise StoreError(
            f"Cannot use {describe(url)}: {_reason(error)}",
            hint=(
                "Check that the database server is running and reachable, and that "
                "[store].url in crm-meetings.toml names the right host, user and database; "
                "then run `crm-meetings doctor`."
            ),
        ) from error


def ping(engine: Engine) -> None:
    """Connect and run ``SELECT 1``; raise :class:`StoreError` saying why if that fails."""
    with translate_errors(engine.url), engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
