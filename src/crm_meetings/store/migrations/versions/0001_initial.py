"""Initial schema: meetings with invitees and related records, sessions, participants,
sync checkpoints and sync runs.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Constraint names are spelled out (``op.f`` marks them final); they are the names
``tables.NAMING_CONVENTION`` gives, so later migrations can address them by the same name
on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ID = 255
EMAIL = 320


def _id(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(ID), nullable=nullable)


def _when(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _serial() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), nullable=False)


def _org_id() -> sa.Column[str]:
    return sa.Column("org_id", sa.String(ID), server_default="default", nullable=False)


def upgrade() -> None:
    op.create_table(
        "meetings",
        _id("id"),
        _org_id(),
        sa.Column("crm", sa.String(16), nullable=False),
        _id("crm_record_id", nullable=True),
        _id("uid"),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _id("subject"),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        _id("location"),
        sa.Column("join_url", sa.String(2048), nullable=True),
        _when("starts_at"),
        _when("ends_at"),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("organizer_email", sa.String(EMAIL), nullable=False),
        _id("organizer_name"),
        _id("record_type", nullable=True),
        _id("provider", nullable=True),
        _id("provider_meeting_id", nullable=True),
        _when("created_at", nullable=True),
        _when("updated_at", nullable=True),
        _when("crm_modified_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meetings")),
        sa.UniqueConstraint("uid", name=op.f("uq_meetings_uid")),
        sa.UniqueConstraint(
            "org_id", "crm", "crm_record_id", name=op.f("uq_meetings_org_id_crm_crm_record_id")
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'cancelled', 'deleted')", name=op.f("ck_meetings_status")
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_meetings_ends_after_start")),
    )
    op.create_index(
        op.f("ix_meetings_provider_provider_meeting_id"),
        "meetings",
        ["provider", "provider_meeting_id"],
    )
    op.create_index(
        op.f("ix_meetings_organizer_email_starts_at"), "meetings", ["organizer_email", "starts_at"]
    )

    op.create_table(
        "meeting_invitees",
        _serial(),
        _id("meeting_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(EMAIL), nullable=False),
        _id("name"),
        sa.Column("response", sa.String(16), nullable=False),
        sa.Column("optional", sa.Boolean(), nullable=False),
        _id("relation_type", nullable=True),
        _id("relation_id", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_invitees")),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_invitees_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "meeting_id", "position", name=op.f("uq_meeting_invitees_meeting_id_position")
        ),
        sa.UniqueConstraint(
            "meeting_id", "email", name=op.f("uq_meeting_invitees_meeting_id_email")
        ),
    )
    op.create_index(op.f("ix_meeting_invitees_email"), "meeting_invitees", ["email"])
    op.create_index(
        op.f("ix_meeting_invitees_relation_type_relation_id"),
        "meeting_invitees",
        ["relation_type", "relation_id"],
    )

    op.create_table(
        "meeting_related",
        _serial(),
        _id("meeting_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        _id("object_type"),
        _id("record_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meeting_related")),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_meeting_related_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "meeting_id", "position", name=op.f("uq_meeting_related_meeting_id_position")
        ),
    )
    op.create_index(
        op.f("ix_meeting_related_object_type_record_id"),
        "meeting_related",
        ["object_type", "record_id"],
    )

    op.create_table(
        "sessions",
        _serial(),
        _id("provider"),
        _id("provider_session_id"),
        _id("provider_meeting_id"),
        _id("meeting_id", nullable=True),
        _when("starts_at"),
        _when("ends_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_sessions_meeting_id_meetings"),
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint(
            "provider", "provider_session_id", name=op.f("uq_sessions_provider_provider_session_id")
        ),
    )
    op.create_index(op.f("ix_sessions_meeting_id"), "sessions", ["meeting_id"])
    op.create_index(
        op.f("ix_sessions_provider_provider_meeting_id"),
        "sessions",
        ["provider", "provider_meeting_id"],
    )

    op.create_table(
        "participants",
        _serial(),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _id("name"),
        sa.Column("email", sa.String(EMAIL), nullable=True),
        _when("join_time"),
        _when("leave_time"),
        sa.Column("attended_seconds", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_participants_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "session_id", "position", name=op.f("uq_participants_session_id_position")
        ),
    )
    op.create_index(op.f("ix_participants_email"), "participants", ["email"])

    op.create_table(
        "sync_checkpoints",
        _serial(),
        _org_id(),
        sa.Column("source", sa.String(64), nullable=False),
        _id("object_name"),
        sa.Column("cursor", sa.Text(), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_checkpoints")),
        sa.UniqueConstraint(
            "org_id",
            "source",
            "object_name",
            name=op.f("uq_sync_checkpoints_org_id_source_object_name"),
        ),
    )

    op.create_table(
        "sync_runs",
        _serial(),
        _org_id(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _when("started_at"),
        _when("finished_at", nullable=True),
        sa.Column("organizer", sa.String(EMAIL), nullable=True),
        _id("meeting_id", nullable=True),
        sa.Column("counters", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'partial')",
            name=op.f("ck_sync_runs_status"),
        ),
    )
    op.create_index(op.f("ix_sync_runs_org_id_started_at"), "sync_runs", ["org_id", "started_at"])


def downgrade() -> None:
    for table in (
        "sync_runs",
        "sync_checkpoints",
        "participants",
        "sessions",
        "meeting_related",
        "meeting_invitees",
        "meetings",
    ):
        op.drop_table(table)
