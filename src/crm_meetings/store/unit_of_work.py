"""The :class:`Store` (engine + sessions) and its :class:`UnitOfWork` (one transaction)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TypeVar

from sqlalchemy import event, orm
from sqlalchemy.engine import Engine

from crm_meetings.errors import StoreError
from crm_meetings.store import migrate
from crm_meetings.store.db import (
    READ_ONLY_OPTION,
    create_engine,
    describe,
    ping,
    translate_errors,
)
from crm_meetings.store.repositories import (
    CheckpointRepository,
    Clock,
    MeetingRepository,
    Repository,
    SessionRepository,
    SyncRunRepository,
    utc_now,
)

__all__ = ["Store", "UnitOfWork"]

R = TypeVar("R", bound=Repository)


def _read_only_refusal() -> StoreError:
    return StoreError(
        "A read-only unit of work (Store.reading) tried to write",
        hint="Use Store.transaction() for a unit of work that changes rows.",
    )


def _refuse_flushes(session: orm.Session, flush_context: object, instances: object) -> None:
    if session.new or session.dirty or session.deleted:
        raise _read_only_refusal()


def _refuse_statements(state: orm.ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise _read_only_refusal()


class UnitOfWork:
    """One database transaction and the repositories that share it.

    ``uow.session`` is the SQLAlchemy session; a repository added later is reached with
    ``uow.repository(OutboxRepository)`` (one instance per unit of work).
    """

    def __init__(self, session: orm.Session, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock
        self._repositories: dict[type[Repository], Repository] = {}

    def repository(self, cls: type[R]) -> R:
        """The unit of work's instance of repository class ``cls``."""
        found = self._repositories.get(cls)
        if not isinstance(found, cls):
            found = cls(self.session, self.clock)
            self._repositories[cls] = found
        return found

    @property
    def meetings(self) -> MeetingRepository:
        return self.repository(MeetingRepository)

    @property
    def sessions(self) -> SessionRepository:
        return self.repository(SessionRepository)

    @property
    def checkpoints(self) -> CheckpointRepository:
        return self.repository(CheckpointRepository)

    @property
    def runs(self) -> SyncRunRepository:
        return self.repository(SyncRunRepository)

    def flush(self) -> None:
        """Send pending writes now (e.g. to see constraint errors before the commit)."""
        self.session.flush()


class Store:
    """The database: ``with store.transaction() as uow:`` commits on success, else rolls back.

    Nothing connects until first use. ``clock`` stamps ``updated_at``/``started_at``
    values (tests and the sandbox pass a fixed one).
    """

    def __init__(self, url: str, *, clock: Clock = utc_now, echo: bool = False) -> None:
        self.clock = clock
        self.engine: Engine = create_engine(url, echo=echo)
        self._sessions = orm.sessionmaker(self.engine, expire_on_commit=False)
        # reading(): no write lock on SQLite (see db.py), and writes refused; the listeners
        # sit on these sessions only, so a writing unit of work pays nothing for them
        self._readers = orm.sessionmaker(
            self.engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )
        event.listen(self._readers, "before_flush", _refuse_flushes)
        event.listen(self._readers, "do_orm_execute", _refuse_statements)
        self._open: ContextVar[bool] = ContextVar(f"store-{id(self)}-open", default=False)

    def __repr__(self) -> str:
        return f"Store({describe(self.engine.url)})"

    @property
    def description(self) -> str:
        """The database for humans, password masked (for logs and ``doctor``)."""
        return describe(self.engine.url)

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """One transaction. Opening a second inside the first (same thread or task) is an
        error: on SQLite it would wait for the first's write lock until the busy timeout.
        """
        with self._begin(self._sessions) as uow:
            yield uow

    @contextmanager
    def reading(self) -> Iterator[UnitOfWork]:
        """A transaction that only reads. On SQLite it takes no write lock (``BEGIN``, not
        ``BEGIN IMMEDIATE``): readers never wait for each other or for a writer (WAL), so a
        page of reads is not queued behind every request. A write in it is an error."""
        with self._begin(self._readers) as uow:
            yield uow

    @contextmanager
    def _begin(self, sessions: orm.sessionmaker[orm.Session]) -> Iterator[UnitOfWork]:
        if self._open.get():
            raise StoreError(
                f"A transaction on {self.description} is already open here",
                hint="Pass the open unit of work down instead of starting another one.",
            )
        token = self._open.set(True)
        try:
            with translate_errors(self.engine.url), sessions.begin() as session:
                yield UnitOfWork(session, self.clock)
        finally:
            self._open.reset(token)

    def upgrade(self, revision: str = "head") -> str:
        """Migrate this store's database; returns the revision now current."""
        return migrate.upgrade(self.engine, revision)

    def check(self) -> str:
        """Connect and check the schema is current; return its revision (for ``doctor``)."""
        ping(self.engine)
        revision = migrate.current(self.engine)
        expected = migrate.head()
        if revision is not None and not migrate.is_known(revision):
            raise StoreError(
                f"{self.description} is at schema revision {revision}, which this version of "
                f"crm-meetings does not know (it knows up to {expected})",
                hint="A newer crm-meetings migrated this database: upgrade crm-meetings.",
            )
        if revision != expected:
            raise StoreError(
                f"{self.description} is at schema revision {revision or 'none'}, "
                f"this version of crm-meetings needs {expected}",
                hint="Run `crm-meetings db upgrade`.",
            )
        return revision

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()
