"""Schema migrations, driven from code: ``upgrade``, ``downgrade``, ``current``, ``head``.

There is no ``alembic.ini``: the Alembic configuration is built here, with its script
location inside the package. Each command runs in one transaction on one connection, so a
failed migration leaves the schema as it was (SQLite and PostgreSQL both have
transactional DDL). On SQLite, foreign keys are off while tables are rebuilt in batch mode
and checked before the commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from crm_meetings.errors import StoreError
from crm_meetings.store.db import create_engine, describe, normalize_url, translate_errors

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "is_current",
    "upgrade",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for our migrations; ``url`` is only needed for ``--sql`` mode."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision the installed code knows."""
    script = ScriptDirectory.from_config(alembic_config())
    revision = script.get_current_head()
    if revision is None:  # pragma: no cover - the package always ships 0001
        raise StoreError("No migrations are installed", hint="Reinstall crm-meetings.")
    return revision


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migrating(url: str) -> Iterator[tuple[Config, Connection]]:
    """One connection in one transaction, handed to ``env.py``; commits on success."""
    engine = create_engine(url, foreign_keys=False)
    try:
        with translate_errors(engine.url), engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            try:
                yield config, connection
            except CommandError as error:
                raise StoreError(
                    f"Cannot migrate {describe(engine.url)}: {error}",
                    hint=f"Known revisions run from 'base' to '{head()}'.",
                ) from error
            if connection.dialect.name == "sqlite":
                _check_foreign_keys(connection, url)
    finally:
        engine.dispose()


def _check_foreign_keys(connection: Connection, url: str) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StoreError(
            f"Migrating {describe(url)} would leave {len(broken)} rows with dangling "
            f"references in {', '.join(tables)}; nothing was changed",
            hint="Report this with the output of `crm-meetings doctor`.",
        )


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate the database at ``url`` up to ``revision``; return the revision now current."""
    with _migrating(url) as (config, connection):
        command.upgrade(config, revision)
        now = _revision_of(connection)
    return now or "base"


def downgrade(url: str, revision: str) -> str | None:
    """Migrate down to ``revision`` (``"base"`` drops everything); return the current one."""
    with _migrating(url) as (config, connection):
        command.downgrade(config, revision)
        now = _revision_of(connection)
    return now


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; ``None`` when it was never migrated."""
    engine = create_engine(url)
    try:
        with translate_errors(engine.url), engine.connect() as connection:
            return _revision_of(connection)
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    """Whether the database is at :func:`head` (what ``doctor`` reports)."""
    return current(url) == head()
