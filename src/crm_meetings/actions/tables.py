"""The actions' tables (store migration 0004) on the store's ``Base``.

* ``action_requests``: one row per (org, idempotency key): the request's fingerprint, the
  progress of an unfinished action (``state``) and the result of a finished one.
* ``action_audit``: who did what, when, with which outcome; one row per attempt or replay.
* ``meeting_conferencing``: what the conferencing provider told us at schedule time and the
  model does not hold (the dial-in text), for invitations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import DEFAULT_ORG_ID, EMAIL, ID, Base

__all__ = ["ActionAuditRow", "ActionRequestRow", "MeetingConferencingRow"]


class ActionRequestRow(Base):
    __tablename__ = "action_requests"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "idempotency_key"),
        sa.Index(None, "meeting_id"),
        sa.CheckConstraint("status IN ('pending', 'succeeded')", name="status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID), server_default=DEFAULT_ORG_ID)
    idempotency_key: Mapped[str] = mapped_column(sa.String(ID))
    action: Mapped[str] = mapped_column(sa.String(32))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    meeting_id: Mapped[str | None] = mapped_column(sa.String(ID))
    actor: Mapped[str] = mapped_column(sa.String(EMAIL))
    state: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    attempts: Mapped[int] = mapped_column(sa.Integer())
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class ActionAuditRow(Base):
    __tablename__ = "action_audit"
    __table_args__ = (sa.Index(None, "org_id", "at"), sa.Index(None, "meeting_id"))

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID), server_default=DEFAULT_ORG_ID)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(EMAIL))
    action: Mapped[str] = mapped_column(sa.String(32))
    outcome: Mapped[str] = mapped_column(sa.String(16))
    meeting_id: Mapped[str | None] = mapped_column(sa.String(ID))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(ID))
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class MeetingConferencingRow(Base):
    __tablename__ = "meeting_conferencing"

    meeting_id: Mapped[str] = mapped_column(
        sa.ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True
    )
    dial_in: Mapped[str | None] = mapped_column(sa.Text())
