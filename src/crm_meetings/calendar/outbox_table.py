"""The ``outbox_messages`` table (created by store migration 0002) on the store's ``Base``."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import Base

__all__ = ["OutboxMessageRow"]


class OutboxMessageRow(Base):
    """One queued e-mail; ``raw`` is sent byte for byte."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        sa.Index("ix_outbox_messages_status_next_attempt_at", "status", "next_attempt_at"),
        sa.Index("ix_outbox_messages_meeting_uid", "meeting_uid"),
    )

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    meeting_uid: Mapped[str] = mapped_column(sa.String(255))
    method: Mapped[str] = mapped_column(sa.String(16))
    sequence: Mapped[int] = mapped_column(sa.Integer())
    recipient: Mapped[str] = mapped_column(sa.String(320))
    sender: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(1024))
    message_id: Mapped[str] = mapped_column(sa.String(255))
    raw: Mapped[bytes] = mapped_column(sa.LargeBinary())
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer(), default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text())
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
