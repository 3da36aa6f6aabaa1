"""The store: SQLAlchemy 2 tables, repositories returning model values, Alembic migrations.

store = Store(default_sqlite_url(data_dir))   # or "postgresql://user@host/db"
upgrade(store_url)                            # `crm-meetings db upgrade`
with store.transaction() as uow:              # one transaction
    uow.meetings.add(meeting)
    uow.checkpoints.set("default", "zoom", "meetings", cursor)
"""

from crm_meetings.store.db import create_engine, default_sqlite_url, describe, ping
from crm_meetings.store.migrate import current, downgrade, head, is_current, upgrade
from crm_meetings.store.repositories import (
    CheckpointRepository,
    Clock,
    MeetingRepository,
    Repository,
    SessionRepository,
    SyncRunRepository,
)
from crm_meetings.store.tables import DEFAULT_ORG_ID
from crm_meetings.store.unit_of_work import Store, UnitOfWork
from crm_meetings.store.values import Checkpoint, RunCounters, SyncRun, SyncRunStatus, UpsertResult

__all__ = [
    "DEFAULT_ORG_ID",
    "Checkpoint",
    "CheckpointRepository",
    "Clock",
    "MeetingRepository",
    "Repository",
    "RunCounters",
    "SessionRepository",
    "Store",
    "SyncRun",
    "SyncRunRepository",
    "SyncRunStatus",
    "UnitOfWork",
    "UpsertResult",
    "create_engine",
    "current",
    "default_sqlite_url",
    "describe",
    "downgrade",
    "head",
    "is_current",
    "ping",
    "upgrade",
]
