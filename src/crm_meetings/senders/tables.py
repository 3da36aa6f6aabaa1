"""Tables of organisation addresses and their uses (created by the routing/senders/contacts
migration) on the store's ``Base``.

The limit of 10 addresses per organisation is a database invariant: every address takes
a ``slot`` from 1 to 10, unique per organisation, so an eleventh insert cannot commit,
whatever the code above does and however many requests race.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.senders.addresses import MAX_ADDRESSES
from crm_meetings.store.tables import EMAIL, ID, Base

__all__ = ["AddressUseRow", "MailLogRow", "OrgAddressRow"]


class OrgAddressRow(Base):
    __tablename__ = "org_addresses"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "email"),
        sa.UniqueConstraint("org_id", "slot"),
        sa.CheckConstraint(f"slot BETWEEN 1 AND {MAX_ADDRESSES}", name="slot"),
        sa.CheckConstraint("status IN ('pending', 'confirmed')", name="status"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID))
    slot: Mapped[int]
    email: Mapped[str] = mapped_column(sa.String(EMAIL))
    display_name: Mapped[str] = mapped_column(sa.String(ID))
    profiles: Mapped[list[Any]] = mapped_column(sa.JSON)
    reply_to: Mapped[str | None] = mapped_column(sa.String(EMAIL))
    status: Mapped[str] = mapped_column(sa.String(16))
    code_hash: Mapped[str | None] = mapped_column(sa.String(64))
    code_sent_at: Mapped[datetime | None]
    attempts: Mapped[int]
    created_at: Mapped[datetime]


class AddressUseRow(Base):
    """Where an address is used: ("invitations", "default"), ("rotation", id), ("approvals", …)."""

    __tablename__ = "org_address_uses"

    org_id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    ref: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    address_id: Mapped[str] = mapped_column(
        sa.ForeignKey("org_addresses.id", ondelete="RESTRICT"), index=True
    )


class MailLogRow(Base):
    """An e-mail from an organisation address to log on the CRM once it was delivered.

    One row per outbox message (``mail_key``: its idempotency key), queued in the
    transaction that queued the message; :mod:`crm_meetings.senders.crm_log` claims rows
    whose message was sent and records each CRM answer (``logged``, or ``pending`` again
    with a later ``next_attempt_at``, or ``failed``). Created by migration 0008.
    """

    __tablename__ = "crm_mail_log"
    __table_args__ = (
        sa.Index("ix_crm_mail_log_status_next_attempt_at", "status", "next_attempt_at"),
        sa.CheckConstraint("status IN ('pending', 'logging', 'logged', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    mail_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID))
    crm: Mapped[str] = mapped_column(sa.String(16))
    meeting_id: Mapped[str] = mapped_column(sa.String(ID))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]
    crm_activity_id: Mapped[str | None] = mapped_column(sa.String(ID))
    last_error: Mapped[str | None] = mapped_column(sa.Text())
    created_at: Mapped[datetime]
    logged_at: Mapped[datetime | None]
