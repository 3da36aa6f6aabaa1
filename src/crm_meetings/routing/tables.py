"""Tables of rotations, teams, bookings and the trust circle, on the store's ``Base``.

Two database invariants carry the concurrency guarantees:

- ``rotations.version`` is bumped by every change with ``UPDATE … WHERE version = :v``
  (compare-and-swap), and a booking records the version it was computed from, unique
  per rotation: two bookings can never come from the same state of the counts.
- ``approval_tokens_used.token_hash`` is a primary key: a link works once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import EMAIL, ID, Base

__all__ = [
    "ApprovalTokenRow",
    "BookingRequestRow",
    "RotationBookingRow",
    "RotationMemberRow",
    "RotationRow",
    "RotationTeamRow",
    "TeamMemberRow",
    "TrustCircleRow",
    "TrustEntryRow",
]


class RotationRow(Base):
    __tablename__ = "rotations"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "name"),
        sa.CheckConstraint("policy IN ('reset', 'calibrate')", name="policy"),
    )

    id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID))
    name: Mapped[str] = mapped_column(sa.String(ID))
    policy: Mapped[str] = mapped_column(sa.String(16))
    users: Mapped[list[Any]] = mapped_column(sa.JSON)  # members listed by name
    version: Mapped[int]
    epoch: Mapped[int]  # bumped when counts are reset: older bookings no longer count
    created_at: Mapped[datetime]


def _rotation_fk() -> Mapped[str]:
    return mapped_column(sa.ForeignKey("rotations.id", ondelete="CASCADE"))


class RotationMemberRow(Base):
    __tablename__ = "rotation_members"
    __table_args__ = (
        sa.UniqueConstraint("rotation_id", "email"),
        sa.CheckConstraint("booked >= 0", name="booked_not_negative"),
        sa.CheckConstraint("weight > 0", name="weight_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rotation_id: Mapped[str] = _rotation_fk()
    position: Mapped[int]
    email: Mapped[str] = mapped_column(sa.String(EMAIL))
    booked: Mapped[int]  # the member's count in this rotation
    available: Mapped[bool]
    weight: Mapped[float] = mapped_column(sa.Float)
    daily_cap: Mapped[int | None]
    last_scheduled: Mapped[datetime | None]
    direct: Mapped[bool]
    teams: Mapped[list[Any]] = mapped_column(sa.JSON)


class RotationTeamRow(Base):
    __tablename__ = "rotation_teams"

    rotation_id: Mapped[str] = mapped_column(
        sa.ForeignKey("rotations.id", ondelete="CASCADE"), primary_key=True
    )
    team: Mapped[str] = mapped_column(sa.String(ID), primary_key=True, index=True)


class TeamMemberRow(Base):
    __tablename__ = "team_members"

    org_id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    team: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(EMAIL), primary_key=True)


class RotationBookingRow(Base):
    __tablename__ = "rotation_bookings"
    __table_args__ = (
        sa.UniqueConstraint("rotation_id", "rotation_version"),
        sa.Index(None, "rotation_id", "member", "booked_at"),
        sa.CheckConstraint("state IN ('booked', 'cancelled', 'deleted')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rotation_id: Mapped[str] = _rotation_fk()
    rotation_version: Mapped[int]  # the state of the counts this booking was computed from
    epoch: Mapped[int]
    meeting_id: Mapped[str] = mapped_column(sa.String(ID), unique=True)
    member: Mapped[str] = mapped_column(sa.String(EMAIL))
    suggested: Mapped[str | None] = mapped_column(sa.String(EMAIL))
    explanation: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    booked_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(sa.String(16))
    ended_at: Mapped[datetime | None]


class TrustCircleRow(Base):
    __tablename__ = "trust_circles"
    __table_args__ = (sa.CheckConstraint("mode IN ('restricted', 'everyone')", name="mode"),)

    owner: Mapped[str] = mapped_column(sa.String(EMAIL), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID))
    mode: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]


class TrustEntryRow(Base):
    __tablename__ = "trust_entries"
    __table_args__ = (sa.CheckConstraint("kind IN ('address', 'domain')", name="kind"),)

    owner: Mapped[str] = mapped_column(
        sa.ForeignKey("trust_circles.owner", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(EMAIL), primary_key=True)


class BookingRequestRow(Base):
    __tablename__ = "booking_requests"
    __table_args__ = (
        sa.UniqueConstraint("owner", "message_id"),
        sa.Index(None, "owner", "status"),
        sa.CheckConstraint(
            "status IN ('accepted', 'pending', 'approved', 'declined', 'expired', 'refused')",
            name="status",
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(ID))
    owner: Mapped[str] = mapped_column(sa.String(EMAIL))
    requester: Mapped[str] = mapped_column(sa.String(EMAIL))
    requester_name: Mapped[str] = mapped_column(sa.String(ID))
    channel: Mapped[str] = mapped_column(sa.String(16))
    subject: Mapped[str] = mapped_column(sa.String(1024))
    body: Mapped[str] = mapped_column(sa.Text)
    message_id: Mapped[str | None] = mapped_column(sa.String(ID))
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class ApprovalTokenRow(Base):
    __tablename__ = "approval_tokens_used"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(
        sa.ForeignKey("booking_requests.id", ondelete="CASCADE"), index=True
    )
    used_at: Mapped[datetime]
