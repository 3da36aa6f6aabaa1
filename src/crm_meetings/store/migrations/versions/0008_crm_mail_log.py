"""Mail from organisation addresses, to log on the CRM records once delivered.

Revision ID: 0008
Revises: 0007

One row per outbox message to log (``mail_key`` = the message's idempotency key, unique);
the logging loop claims rows by ``status`` and ``next_attempt_at``. The ORM model is
``crm_meetings.senders.tables.MailLogRow``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_mail_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mail_key", sa.String(64), nullable=False),
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("crm", sa.String(16), nullable=False),
        sa.Column("meeting_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("crm_activity_id", sa.String(255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'logging', 'logged', 'failed')",
            name=op.f("ck_crm_mail_log_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_mail_log")),
        sa.UniqueConstraint("mail_key", name=op.f("uq_crm_mail_log_mail_key")),
    )
    op.create_index(
        op.f("ix_crm_mail_log_status_next_attempt_at"),
        "crm_mail_log",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_crm_mail_log_status_next_attempt_at"), table_name="crm_mail_log")
    op.drop_table("crm_mail_log")
