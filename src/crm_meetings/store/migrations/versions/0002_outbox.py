"""The mail outbox: iMIP messages queued in the transaction that caused them.

Revision ID: 0002
Revises: 0001

One row per (UID, SEQUENCE, METHOD, recipient), kept unique by ``idempotency_key``; the
delivery loop claims rows by ``status`` and ``next_attempt_at``. The ORM model is
``crm_meetings.calendar.outbox_table.OutboxMessageRow``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("meeting_uid", sa.String(255), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_messages_idempotency_key")),
    )
    op.create_index(
        op.f("ix_outbox_messages_status_next_attempt_at"),
        "outbox_messages",
        ["status", "next_attempt_at"],
    )
    op.create_index(op.f("ix_outbox_messages_meeting_uid"), "outbox_messages", ["meeting_uid"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_messages_meeting_uid"), table_name="outbox_messages")
    op.drop_index(op.f("ix_outbox_messages_status_next_attempt_at"), table_name="outbox_messages")
    op.drop_table("outbox_messages")
