"""The tables, as SQLAlchemy 2 typed declarative models.

These rows never leave the store: repositories translate them to and from the values of
:mod:`crm_meetings.model`. The schema itself is created by the Alembic migrations in
``store/migrations``; a test checks that the migrations and these models agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "DEFAULT_ORG_ID",
    "NAMING_CONVENTION",
    "Base",
    "CheckpointRow",
    "InviteeRow",
    "MeetingRow",
    "ParticipantRow",
    "RelatedRecordRow",
    "SessionRow",
    "SyncRunRow",
    "UTCDateTime",
]

DEFAULT_ORG_ID: Final = "default"

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID: Final = 255  # length of ids, names and other single-line identifiers
EMAIL: Final = 320


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware datetime stored in UTC; reads give back aware UTC datetimes on every backend.

    SQLite keeps no offset, so the value is written as naive UTC and marked UTC on the way
    out. A naive datetime is refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store naive datetime {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def _org_id() -> Mapped[str]:
    return mapped_column(sa.String(ID), default=DEFAULT_ORG_ID, server_default=DEFAULT_ORG_ID)


class MeetingRow(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "crm", "crm_record_id"),
        sa.Index(None, "provider", "provider_meeting_id"),
        sa.Index(None, "organizer_email", "starts_at"),
        sa.CheckConstraint("status IN ('scheduled', 'cancelled', 'deleted')", name="status"),
        sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    org_id: Mapped[str] = _org_id()
    crm: Mapped[str] = mapped_column(sa.String(16))
    crm_record_id: Mapped[str | None] = mapped_column(sa.String(ID))
    uid: Mapped[str] = mapped_column(sa.String(ID), unique=True)
    sequence: Mapped[int]
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(16))
    subject: Mapped[str] = mapped_column(sa.String(ID))
    description: Mapped[str] = mapped_column(sa.Text)
    notes: Mapped[str] = mapped_column(sa.Text)
    location: Mapped[str] = mapped_column(sa.String(ID))
    join_url: Mapped[str | None] = mapped_column(sa.String(2048))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    timezone: Mapped[str] = mapped_column(sa.String(64))
    organizer_email: Mapped[str] = mapped_column(sa.String(EMAIL))
    organizer_name: Mapped[str] = mapped_column(sa.String(ID))
    record_type: Mapped[str | None] = mapped_column(sa.String(ID))
    provider: Mapped[str | None] = mapped_column(sa.String(ID))
    provider_meeting_id: Mapped[str | None] = mapped_column(sa.String(ID))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    crm_modified_at: Mapped[datetime | None]

    invitees: Mapped[list[InviteeRow]] = relationship(
        order_by="InviteeRow.position", cascade="all, delete-orphan", passive_deletes=True
    )
    related: Mapped[list[RelatedRecordRow]] = relationship(
        order_by="RelatedRecordRow.position", cascade="all, delete-orphan", passive_deletes=True
    )


def _meeting_fk() -> Mapped[str]:
    return mapped_column(sa.ForeignKey("meetings.id", ondelete="CASCADE"))


class InviteeRow(Base):
    __tablename__ = "meeting_invitees"
    __table_args__ = (
        sa.UniqueConstraint("meeting_id", "position"),
        sa.UniqueConstraint("meeting_id", "email"),
        sa.Index(None, "email"),
        sa.Index(None, "relation_type", "relation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[str] = _meeting_fk()
    position: Mapped[int]
    email: Mapped[str] = mapped_column(sa.String(EMAIL))
    name: Mapped[str] = mapped_column(sa.String(ID))
    response: Mapped[str] = mapped_column(sa.String(16))
    optional: Mapped[bool]
    relation_type: Mapped[str | None] = mapped_column(sa.String(ID))
    relation_id: Mapped[str | None] = mapped_column(sa.String(ID))


class RelatedRecordRow(Base):
    __tablename__ = "meeting_related"
    __table_args__ = (
        sa.UniqueConstraint("meeting_id", "position"),
        sa.Index(None, "object_type", "record_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meeting_id: Mapped[str] = _meeting_fk()
    position: Mapped[int]
    object_type: Mapped[str] = mapped_column(sa.String(ID))
    record_id: Mapped[str] = mapped_column(sa.String(ID))


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_session_id"),
        sa.Index(None, "provider", "provider_meeting_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(ID))
    provider_session_id: Mapped[str] = mapped_column(sa.String(ID))
    provider_meeting_id: Mapped[str] = mapped_column(sa.String(ID))
    meeting_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("meetings.id", ondelete="SET NULL"), index=True
    )
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]

    participants: Mapped[list[ParticipantRow]] = relationship(
        order_by="ParticipantRow.position", cascade="all, delete-orphan", passive_deletes=True
    )


class ParticipantRow(Base):
    __tablename__ = "participants"
    __table_args__ = (sa.UniqueConstraint("session_id", "position"), sa.Index(None, "email"))

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(sa.ForeignKey("sessions.id", ondelete="CASCADE"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(ID))
    email: Mapped[str | None] = mapped_column(sa.String(EMAIL))
    join_time: Mapped[datetime]
    leave_time: Mapped[datetime]
    attended_seconds: Mapped[int | None]


class CheckpointRow(Base):
    __tablename__ = "sync_checkpoints"
    __table_args__ = (sa.UniqueConstraint("org_id", "source", "object_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[str] = _org_id()
    source: Mapped[str] = mapped_column(sa.String(64))
    object_name: Mapped[str] = mapped_column(sa.String(ID))
    cursor: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime]


class SyncRunRow(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        sa.Index(None, "org_id", "started_at"),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'partial')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[str] = _org_id()
    kind: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    organizer: Mapped[str | None] = mapped_column(sa.String(EMAIL))
    meeting_id: Mapped[str | None] = mapped_column(sa.String(ID))
    counters: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
