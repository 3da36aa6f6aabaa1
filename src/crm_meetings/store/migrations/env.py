"""Alembic environment, driven from code by :mod:`crm_meetings.store.migrate`.

The caller hands over an open connection in ``config.attributes["connection"]``; the
version table then lands in that connection's current schema (its ``search_path`` on
PostgreSQL). Without one, ``sqlalchemy.url`` is used, online or (``--sql``) offline.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from crm_meetings.store.db import create_engine
from crm_meetings.store.migrate import migration_connection
from crm_meetings.store.tables import Base

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    shared = config.attributes.get("connection")
    if isinstance(shared, Connection):
        _configure(shared)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url)
    try:
        with migration_connection(engine) as connection:
            _configure(connection)
            context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
