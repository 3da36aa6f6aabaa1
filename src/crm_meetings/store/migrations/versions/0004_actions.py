"""Actions: idempotency records, the audit trail, and conferencing details per meeting.

Revision ID: 0004
Revises: 0003

The ORM models are in ``crm_meetings.actions.tables``. ``action_requests`` is unique by
(org, idempotency key); a finished request keeps its result so a repeat returns it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ID = 255
EMAIL = 320


def _when(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "action_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(ID), server_default="default", nullable=False),
        sa.Column("idempotency_key", sa.String(ID), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("meeting_id", sa.String(ID), nullable=True),
        sa.Column("actor", sa.String(EMAIL), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("lease_until", nullable=True),
        _when("created_at"),
        _when("updated_at"),
        _when("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_requests")),
        sa.UniqueConstraint(
            "org_id", "idempotency_key", name=op.f("uq_action_requests_org_id_idempotency_key")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded')", name=op.f("ck_action_requests_status")
        ),
    )
    op.create_index(op.f("ix_action_requests_meeting_id"), "action_requests", ["meeting_id"])
    op.create_table(
        "action_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(ID), server_default="default", nullable=False),
        _when("at"),
        sa.Column("actor", sa.String(EMAIL), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("meeting_id", sa.String(ID), nullable=True),
        sa.Column("idempotency_key", sa.String(ID), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_audit")),
    )
    op.create_index(op.f("ix_action_audit_org_id_at"), "action_audit", ["org_id", "at"])
    op.create_index(op.f("ix_action_audit_meeting_id"), "action_audit", ["meeting_id"])
    op.create_table(
        "meeting_conferencing",
        sa.Column("meeting_id", sa.String(ID), nullable=False),
        sa.Column("dial_in", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_conferencing_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("meeting_id", name=op.f("pk_meeting_conferencing")),
    )


def downgrade() -> None:
    op.drop_table("meeting_conferencing")
    op.drop_index(op.f("ix_action_audit_meeting_id"), table_name="action_audit")
    op.drop_index(op.f("ix_action_audit_org_id_at"), table_name="action_audit")
    op.drop_table("action_audit")
    op.drop_index(op.f("ix_action_requests_meeting_id"), table_name="action_requests")
    op.drop_table("action_requests")
