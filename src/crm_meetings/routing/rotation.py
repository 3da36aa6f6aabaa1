"""Meeting rotations (round robin), as pure values and functions.

The rules, as HubSpot's meeting rotations work, plus what users of every peer ask for:

- Members are users listed directly and the members of listed teams; a team's members
  join and leave the rotation as the team changes (:func:`sync_members`).
- An unavailable member (training, holidays) is never suggested until toggled back.
- **The pick**: the available member with the fewest booked meetings; with weights, the
  lowest ``count / weight``. Ties go to the member scheduled least recently (never
  scheduled first), then to the address, so the pick is deterministic.
- A per-member daily cap skips a member who already has that many bookings today.
- Booking adds one to whoever was really booked (the rep may override the suggestion);
  deleting that meeting removes one. **Cancelling removes one too**: a cancelled meeting
  takes none of the member's time, so counting it would skew the split. Counts never go
  below zero.
- **Adding a member resets every member's count** (the default, as the seed product
  does); the ``calibrate`` policy instead starts the newcomer at the rotation's average.
- Every pick comes with an :class:`Explanation`: the candidates with their counts and
  last-scheduled times, and who was skipped and why. It is stored with the booking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crm_meetings.errors import NotFoundError, ValidationError
from crm_meetings.model import normalize_email, utc

__all__ = [
    "Candidate",
    "Explanation",
    "Member",
    "NewMemberPolicy",
    "Rotation",
    "book",
    "pick",
    "set_available",
    "sync_members",
    "unbook",
]


class NewMemberPolicy(StrEnum):
    RESET = "reset"  # every count back to zero: the seed product's rule
    CALIBRATE = "calibrate"  # the newcomer starts at the rotation's average


@dataclass(frozen=True, slots=True)
class Member:
    email: str
    count: int = 0
    available: bool = True
    weight: float = 1.0
    daily_cap: int | None = None
    last_scheduled: datetime | None = None
    teams: frozenset[str] = frozenset()  # the teams that bring this member in
    direct: bool = True  # listed by name, not only through a team

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", normalize_email(self.email))
        if self.count < 0:
            raise ValidationError("count", "must not be negative")
        if not self.weight > 0:
            raise ValidationError("weight", f"must be positive, got {self.weight}")
        if self.daily_cap is not None and self.daily_cap < 1:
            raise ValidationError("daily_cap", "must be at least 1, or unset for no cap")
        if self.last_scheduled is not None:
            object.__setattr__(self, "last_scheduled", utc(self.last_scheduled, "last_scheduled"))

    @property
    def load(self) -> float:
        """Bookings per unit of weight: the quantity the pick equalises."""
        return self.count / self.weight


@dataclass(frozen=True, slots=True)
class Rotation:
    id: str
    name: str
    members: tuple[Member, ...] = ()
    teams: frozenset[str] = frozenset()
    policy: NewMemberPolicy = NewMemberPolicy.RESET

    def member(self, email: str) -> Member:
        wanted = normalize_email(email)
        for member in self.members:
            if member.email == wanted:
                return member
        raise NotFoundError(
            f"{wanted} is not a member of rotation {self.name!r}",
            hint="Add them to the rotation, or to one of its teams, first.",
        )

    def with_member(self, member: Member) -> Rotation:
        """This rotation with ``member`` (matched by address) replaced."""
        members = tuple(member if m.email == member.email else m for m in self.members)
        return dataclasses.replace(self, members=members)


@dataclass(frozen=True, slots=True)
class Candidate:
    email: str
    count: int
    weight: float
    last_scheduled: datetime | None
    booked_today: int


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the pick fell where it did; shown to the rep and stored with the booking."""

    chosen: str | None
    candidates: tuple[Candidate, ...]  # in pick order: the first one is chosen
    skipped: tuple[tuple[str, str], ...]  # (email, reason)

    def as_text(self) -> str:
        lines = [f"Suggested: {self.chosen}" if self.chosen else "Nobody is available."]
        for c in self.candidates:
            when = c.last_scheduled.isoformat() if c.last_scheduled else "never"
            lines.append(
                f"- {c.email}: {c.count} booked (weight {c.weight:g}), last scheduled {when}"
            )
        lines.extend(f"- {email}: skipped, {reason}" for email, reason in self.skipped)
        return "\n".join(lines)


def pick(rotation: Rotation, booked_today: Mapping[str, int] | None = None) -> Explanation:
    """The member to suggest next, with the reasons; ``chosen`` is None when nobody is free."""
    today = booked_today or {}
    skipped: list[tuple[str, str]] = []
    eligible: list[Member] = []
    for member in rotation.members:
        if not member.available:
            skipped.append((member.email, "marked unavailable"))
        elif member.daily_cap is not None and today.get(member.email, 0) >= member.daily_cap:
            skipped.append((member.email, f"reached the daily cap of {member.daily_cap}"))
        else:
            eligible.append(member)
    eligible.sort(
        key=lambda m: (
            m.load,
            m.last_scheduled is not None,
            m.last_scheduled or datetime.min,
            m.email,
        )
    )
    candidates = tuple(
        Candidate(m.email, m.count, m.weight, m.last_scheduled, today.get(m.email, 0))
        for m in eligible
    )
    return Explanation(eligible[0].email if eligible else None, candidates, tuple(skipped))


def book(rotation: Rotation, email: str, at: datetime) -> Rotation:
    """Count one meeting for whoever was really booked (the suggestion or an override)."""
    member = rotation.member(email)
    return rotation.with_member(
        dataclasses.replace(member, count=member.count + 1, last_scheduled=utc(at, "at"))
    )


def unbook(rotation: Rotation, email: str) -> Rotation:
    """A booked meeting was deleted or cancelled: take its count back (never below 0)."""
    try:
        member = rotation.member(email)
    except NotFoundError:
        return rotation  # the member left the rotation since: nothing to take back
    return rotation.with_member(dataclasses.replace(member, count=max(0, member.count - 1)))


def set_available(rotation: Rotation, email: str, available: bool) -> Rotation:
    return rotation.with_member(dataclasses.replace(rotation.member(email), available=available))


def sync_members(
    rotation: Rotation,
    *,
    users: Sequence[str],
    teams: Mapping[str, Sequence[str]],
) -> Rotation:
    """Recompute membership from direct ``users`` and ``teams`` (name → members' e-mails).

    Members who stay keep their counts; members who left are dropped; when anyone joins,
    the rotation's policy applies (reset everyone, or calibrate the newcomers).
    """
    direct = {normalize_email(u) for u in users}
    via: dict[str, set[str]] = {}
    for team, emails in teams.items():
        for email in emails:
            via.setdefault(normalize_email(email), set()).add(team)
    wanted = direct | set(via)
    current = {m.email: m for m in rotation.members}
    joined = sorted(wanted - set(current))
    kept = [
        dataclasses.replace(current[e], direct=e in direct, teams=frozenset(via.get(e, set())))
        for e in sorted(wanted & set(current))
    ]
    newcomers = [Member(e, direct=e in direct, teams=frozenset(via.get(e, set()))) for e in joined]
    if joined and rotation.policy is NewMemberPolicy.RESET:
        kept = [dataclasses.replace(m, count=0) for m in kept]
    elif joined and kept:
        average_load = sum(m.load for m in kept) / len(kept)
        newcomers = [
            dataclasses.replace(m, count=round(average_load * m.weight)) for m in newcomers
        ]
    order = {m.email: i for i, m in enumerate(rotation.members)}
    members = sorted(kept, key=lambda m: order[m.email]) + newcomers
    return dataclasses.replace(rotation, members=tuple(members), teams=frozenset(teams))
