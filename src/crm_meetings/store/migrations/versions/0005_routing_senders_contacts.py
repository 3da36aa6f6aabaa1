"""Rotations, teams, bookings, trust circles and booking requests; organisation sender
addresses and their uses; the contact map's hand-set company profiles, CRM companies and
saved filters.

Revision ID: 0005
Revises: 0004

The ORM models are in ``crm_meetings.routing.tables``, ``crm_meetings.senders.tables`` and
``crm_meetings.contacts.tables``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

ID = 255
EMAIL = 320
_TYPES = "type IS NULL OR type IN ('client', 'referral_source', 'prospect')"


def _when(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int = ID, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _rotation_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["rotation_id"],
        ["rotations.id"],
        name=op.f(f"fk_{table}_rotation_id_rotations"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    _routing()
    _trust()
    _senders()
    _contacts()


def _routing() -> None:
    op.create_table(
        "rotations",
        _text("id"),
        _text("org_id"),
        _text("name"),
        _text("policy", 16),
        sa.Column("users", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotations")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_rotations_org_id_name")),
        sa.CheckConstraint("policy IN ('reset', 'calibrate')", name=op.f("ck_rotations_policy")),
    )
    op.create_table(
        "rotation_members",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("rotation_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        _text("email", EMAIL),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("daily_cap", sa.Integer(), nullable=True),
        _when("last_scheduled", nullable=True),
        sa.Column("direct", sa.Boolean(), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotation_members")),
        _rotation_fk("rotation_members"),
        sa.UniqueConstraint(
            "rotation_id", "email", name=op.f("uq_rotation_members_rotation_id_email")
        ),
        sa.CheckConstraint("booked >= 0", name=op.f("ck_rotation_members_booked_not_negative")),
        sa.CheckConstraint("weight > 0", name=op.f("ck_rotation_members_weight_positive")),
    )
    op.create_table(
        "rotation_teams",
        _text("rotation_id"),
        _text("team"),
        sa.PrimaryKeyConstraint("rotation_id", "team", name=op.f("pk_rotation_teams")),
        _rotation_fk("rotation_teams"),
    )
    op.create_index(op.f("ix_rotation_teams_team"), "rotation_teams", ["team"])
    op.create_table(
        "team_members",
        _text("org_id"),
        _text("team"),
        _text("email", EMAIL),
        sa.PrimaryKeyConstraint("org_id", "team", "email", name=op.f("pk_team_members")),
    )
    op.create_table(
        "rotation_bookings",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("rotation_id"),
        sa.Column("rotation_version", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        _text("meeting_id"),
        _text("member", EMAIL),
        _text("suggested", EMAIL, nullable=True),
        sa.Column("explanation", sa.JSON(), nullable=False),
        _when("booked_at"),
        _text("state", 16),
        _when("ended_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotation_bookings")),
        _rotation_fk("rotation_bookings"),
        sa.UniqueConstraint("meeting_id", name=op.f("uq_rotation_bookings_meeting_id")),
        sa.UniqueConstraint(
            "rotation_id",
            "rotation_version",
            name=op.f("uq_rotation_bookings_rotation_id_rotation_version"),
        ),
        sa.CheckConstraint(
            "state IN ('booked', 'cancelled', 'deleted')", name=op.f("ck_rotation_bookings_state")
        ),
    )
    op.create_index(
        op.f("ix_rotation_bookings_rotation_id_member_booked_at"),
        "rotation_bookings",
        ["rotation_id", "member", "booked_at"],
    )


def _trust() -> None:
    op.create_table(
        "trust_circles",
        _text("owner", EMAIL),
        _text("org_id"),
        _text("mode", 16),
        _when("created_at"),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_trust_circles")),
        sa.CheckConstraint(
            "mode IN ('restricted', 'everyone')", name=op.f("ck_trust_circles_mode")
        ),
    )
    op.create_table(
        "trust_entries",
        _text("owner", EMAIL),
        _text("kind", 16),
        _text("value", EMAIL),
        sa.PrimaryKeyConstraint("owner", "kind", "value", name=op.f("pk_trust_entries")),
        sa.ForeignKeyConstraint(
            ["owner"],
            ["trust_circles.owner"],
            name=op.f("fk_trust_entries_owner_trust_circles"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("kind IN ('address', 'domain')", name=op.f("ck_trust_entries_kind")),
    )
    op.create_table(
        "booking_requests",
        _text("id"),
        _text("org_id"),
        _text("owner", EMAIL),
        _text("requester", EMAIL),
        _text("requester_name"),
        _text("channel", 16),
        _text("subject", 1024),
        sa.Column("body", sa.Text(), nullable=False),
        _text("message_id", nullable=True),
        _text("status", 16),
        _when("created_at"),
        _when("expires_at"),
        _when("decided_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_requests")),
        sa.UniqueConstraint(
            "owner", "message_id", name=op.f("uq_booking_requests_owner_message_id")
        ),
        sa.CheckConstraint(
            "status IN ('accepted', 'pending', 'approved', 'declined', 'expired', 'refused')",
            name=op.f("ck_booking_requests_status"),
        ),
    )
    op.create_index(
        op.f("ix_booking_requests_owner_status"), "booking_requests", ["owner", "status"]
    )
    op.create_table(
        "approval_tokens_used",
        _text("token_hash", 64),
        _text("request_id"),
        _when("used_at"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_approval_tokens_used")),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["booking_requests.id"],
            name=op.f("fk_approval_tokens_used_request_id_booking_requests"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_approval_tokens_used_request_id"), "approval_tokens_used", ["request_id"]
    )


def _senders() -> None:
    op.create_table(
        "org_addresses",
        _text("id"),
        _text("org_id"),
        sa.Column("slot", sa.Integer(), nullable=False),
        _text("email", EMAIL),
        _text("display_name"),
        sa.Column("profiles", sa.JSON(), nullable=False),
        _text("reply_to", EMAIL, nullable=True),
        _text("status", 16),
        _text("code_hash", 64, nullable=True),
        _when("code_sent_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_addresses")),
        sa.UniqueConstraint("org_id", "email", name=op.f("uq_org_addresses_org_id_email")),
        sa.UniqueConstraint("org_id", "slot", name=op.f("uq_org_addresses_org_id_slot")),
        sa.CheckConstraint("slot BETWEEN 1 AND 10", name=op.f("ck_org_addresses_slot")),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed')", name=op.f("ck_org_addresses_status")
        ),
    )
    op.create_table(
        "org_address_uses",
        _text("org_id"),
        _text("kind", 64),
        _text("ref"),
        _text("address_id"),
        sa.PrimaryKeyConstraint("org_id", "kind", "ref", name=op.f("pk_org_address_uses")),
        sa.ForeignKeyConstraint(
            ["address_id"],
            ["org_addresses.id"],
            name=op.f("fk_org_address_uses_address_id_org_addresses"),
            ondelete="RESTRICT",
        ),
    )
    op.create_index(op.f("ix_org_address_uses_address_id"), "org_address_uses", ["address_id"])


def _contacts() -> None:
    op.create_table(
        "company_profiles",
        _text("org_id"),
        _text("domain"),
        _text("type", 32, nullable=True),
        _text("partner", EMAIL, nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("org_id", "domain", name=op.f("pk_company_profiles")),
        sa.CheckConstraint(_TYPES, name=op.f("ck_company_profiles_type")),
    )
    op.create_table(
        "crm_companies",
        _text("org_id"),
        _text("domain"),
        _text("name"),
        _text("type", 32, nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("org_id", "domain", name=op.f("pk_crm_companies")),
        sa.CheckConstraint(_TYPES, name=op.f("ck_crm_companies_type")),
    )
    op.create_table(
        "saved_filters",
        _text("org_id"),
        _text("user_email", EMAIL),
        _text("name"),
        _text("scope", 16),
        _text("type", 32, nullable=True),
        _text("partner", EMAIL, nullable=True),
        sa.PrimaryKeyConstraint("org_id", "user_email", "name", name=op.f("pk_saved_filters")),
        sa.CheckConstraint(_TYPES, name=op.f("ck_saved_filters_type")),
        sa.CheckConstraint("scope IN ('mine', 'firm')", name=op.f("ck_saved_filters_scope")),
    )


def downgrade() -> None:
    for table in (
        "saved_filters",
        "crm_companies",
        "company_profiles",
        "org_address_uses",
        "org_addresses",
        "approval_tokens_used",
        "booking_requests",
        "trust_entries",
        "trust_circles",
        "rotation_bookings",
        "team_members",
        "rotation_teams",
        "rotation_members",
        "rotations",
    ):
        op.drop_table(table)
