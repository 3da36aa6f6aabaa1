"""Schema migrations, driven from code: ``upgrade``, ``downgrade``, ``current``, ``head``.

There is no ``alembic.ini``: the Alembic configuration is built here, with its script
location inside the package. Each command runs in one transaction on one connection, so a
failed migration leaves the schema as it was (SQLite and PostgreSQL both have
transactional DDL); see :func:`migration_connection`. Alembic is imported when a command
runs, not with the store: it took a fifth of every CLI start and of every worker process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy.engine import Connection, Engine

from crm_meetings.errors import StoreError
from crm_meetings.store.db import create_engine, describe, normalize_url, translate_errors

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current",
    "downgrade",
    "head",
    "is_current",
    "is_known",
    "migration_connection",
    "upgrade",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for our migrations; ``url`` is only needed for ``--sql`` mode."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalize_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head() -> str:
    """The newest revision the installed code knows."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    except (CommandError, RevisionError) as error:
        raise StoreError(
            f"The installed migrations in {MIGRATIONS_DIR} are inconsistent: {error}",
            hint="Reinstall crm-meetings; each revision must build on exactly one other.",
        ) from error
    if revision is None:  # pragma: no cover - the package always ships 0001
        raise StoreError("No migrations are installed", hint="Reinstall crm-meetings.")
    return revision


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of the installed migrations (else a newer release made it)."""
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def _revision_of(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _set_sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # Outside any transaction, where SQLite honours it: straight on the driver connection,
    # since a statement through SQLAlchemy would begin one first.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that commits on success, as migrations need it.

    On SQLite, foreign keys are off meanwhile (batch mode rebuilds tables, and dropping a
    parent table with enforcement on would cascade into its children) and checked before
    the commit; they are switched on again before the connection returns to the pool.
    """
    sqlite = engine.dialect.name == "sqlite"
    with translate_errors(engine.url), engine.connect() as connection:
        if sqlite:
            _set_sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _set_sqlite_foreign_keys(connection, on=True)


@contextmanager
def _engine_for(target: str | Engine) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = create_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def _migrating(target: str | Engine) -> Iterator[tuple[Config, Connection]]:
    """The Alembic config and the connection ``env.py`` will use."""
    from alembic.util import CommandError

    with _engine_for(target) as engine, migration_connection(engine) as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        try:
            yield config, connection
        except CommandError as error:
            raise StoreError(
                f"Cannot migrate {describe(engine.url)}: {error}",
                hint=f"Known revisions run from 'base' to '{head()}'.",
            ) from error


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise StoreError(
            f"Migrating {describe(connection.engine.url)} would leave {len(broken)} rows with "
            f"dangling references in {', '.join(tables)}; nothing was changed",
            hint="Report this with the output of `crm-meetings doctor`.",
        )


def upgrade(url: str | Engine, revision: str = "head") -> str:
    """Migrate the database at ``url`` up to ``revision``; return the revision now current.

    An :class:`Engine` works too (``Store.upgrade`` passes its own, which is what keeps an
    in-memory SQLite database usable).
    """
    from alembic import command

    with _migrating(url) as (config, connection):
        command.upgrade(config, revision)
        now = _revision_of(connection)
    return now or "base"


def downgrade(url: str | Engine, revision: str) -> str | None:
    """Migrate down to ``revision`` (``"base"`` drops everything); return the current one."""
    from alembic import command

    with _migrating(url) as (config, connection):
        command.downgrade(config, revision)
        now = _revision_of(connection)
    return now


def current(url: str | Engine) -> str | None:
    """The revision the database at ``url`` is at; ``None`` when it was never migrated."""
    with _engine_for(url) as engine, translate_errors(engine.url), engine.connect() as connection:
        return _revision_of(connection)


def is_current(url: str | Engine) -> bool:
    """Whether the database is at :func:`head` (what ``doctor`` reports)."""
    return current(url) == head()
