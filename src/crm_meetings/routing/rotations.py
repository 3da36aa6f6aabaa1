"""Rotations in the store: the rules of :mod:`.rotation`, applied atomically.

``uow.repository(RotationRepository)`` loads a rotation, applies one pure function of
:mod:`.rotation` and writes the result back with a compare-and-swap on the rotation's
``version`` (``UPDATE … WHERE version = :v``). On PostgreSQL the rotation row is also
locked first (``SELECT … FOR UPDATE``), so concurrent bookings queue instead of retrying;
on SQLite every write transaction already holds the database's write lock (``BEGIN
IMMEDIATE``). Either way, a lost swap means the counts changed under us: the pick is
computed again from fresh rows. A booking records the version it was computed from, and
``(rotation, version)`` is unique: no two bookings ever come from the same counts.

Counts and resets: booking adds one to whoever was really booked (the suggestion or an
override); cancelling or deleting the meeting takes it back (:meth:`end_booking`, once).
When members join under the ``reset`` policy the rotation's ``epoch`` moves on, and a
booking made before that no longer counts: ending it takes nothing back.

Teams: :meth:`set_team` replaces a team's members and re-syncs every rotation listing it.
The daily cap counts the member's live bookings on the booking's day in the given zone
(UTC unless told).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Final, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import exc

from crm_meetings.errors import ConflictError, NotFoundError, ValidationError
from crm_meetings.model import normalize_email, utc
from crm_meetings.routing import rotation as rules
from crm_meetings.routing.rotation import Candidate, Explanation, Member, NewMemberPolicy, Rotation
from crm_meetings.routing.rows import first, one
from crm_meetings.routing.tables import (
    RotationBookingRow,
    RotationMemberRow,
    RotationRow,
    RotationTeamRow,
    TeamMemberRow,
)
from crm_meetings.store.repositories import Repository

__all__ = [
    "Booking",
    "BookingState",
    "RotationRepository",
    "explanation_from_json",
    "explanation_to_json",
]

_RETRIES: Final = 50
T = TypeVar("T")


class BookingState(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Booking:
    """One meeting booked through a rotation, with the explanation shown to the rep."""

    rotation_id: str
    meeting_id: str
    member: str
    suggested: str | None
    explanation: Explanation
    booked_at: datetime
    state: BookingState
    rotation_version: int

    @property
    def overridden(self) -> bool:
        return self.member != self.suggested


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def explanation_to_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "chosen": explanation.chosen,
        "candidates": [
            {
                "email": c.email,
                "count": c.count,
                "weight": c.weight,
                "last_scheduled": _when(c.last_scheduled),
                "booked_today": c.booked_today,
            }
            for c in explanation.candidates
        ],
        "skipped": [{"email": e, "reason": r} for e, r in explanation.skipped],
    }


def explanation_from_json(data: Mapping[str, Any]) -> Explanation:
    return Explanation(
        chosen=data.get("chosen"),
        candidates=tuple(
            Candidate(
                email=str(c["email"]),
                count=int(c["count"]),
                weight=float(c["weight"]),
                last_scheduled=_parse_when(c.get("last_scheduled")),
                booked_today=int(c.get("booked_today", 0)),
            )
            for c in data.get("candidates", ())
        ),
        skipped=tuple((str(s["email"]), str(s["reason"])) for s in data.get("skipped", ())),
    )


def _booking(row: RotationBookingRow) -> Booking:
    return Booking(
        rotation_id=row.rotation_id,
        meeting_id=row.meeting_id,
        member=row.member,
        suggested=row.suggested,
        explanation=explanation_from_json(row.explanation),
        booked_at=row.booked_at,
        state=BookingState(row.state),
        rotation_version=row.rotation_version,
    )


@dataclass(frozen=True, slots=True)
class _Loaded:
    rotation: Rotation
    users: tuple[str, ...]
    version: int
    epoch: int

    def but(self, rotation: Rotation) -> _Loaded:
        """The same state with the members of ``rotation``."""
        return dataclasses.replace(self, rotation=rotation)


def _new_id() -> str:
    return f"rot_{secrets.token_hex(8)}"


def _already_booked(meeting_id: str) -> ConflictError:
    return ConflictError(
        f"Meeting {meeting_id} was already booked through a rotation",
        hint="Cancel or delete the meeting to give the booking back.",
    )


class RotationRepository(Repository):
    """Rotations, their members, teams and bookings; every change is one atomic step."""

    #: lock the rotation row on PostgreSQL before a change (the swap protects either way)
    lock_rows: ClassVar[bool] = True

    # --- reading ---------------------------------------------------------------------

    def get(self, ref: str, *, org_id: str | None = None) -> Rotation:
        """A rotation by id, or by name within ``org_id``."""
        return self._load(self._row(ref, org_id=org_id)).rotation

    def rotations(self, org_id: str) -> list[Rotation]:
        query = sa.select(RotationRow).where(RotationRow.org_id == org_id)
        rows = self.session.scalars(query.order_by(RotationRow.name)).all()
        return [self._load(row).rotation for row in rows]

    def version(self, rotation_id: str) -> int:
        return self._row(rotation_id).version

    def bookings(self, rotation_id: str) -> list[Booking]:
        query = sa.select(RotationBookingRow).where(RotationBookingRow.rotation_id == rotation_id)
        order = (RotationBookingRow.booked_at, RotationBookingRow.id)
        return [_booking(row) for row in self.session.scalars(query.order_by(*order))]

    def booking_for(self, meeting_id: str) -> Booking | None:
        row = self._booking_row(meeting_id)
        return None if row is None else _booking(row)

    def suggest(self, rotation_id: str, at: datetime, *, zone: str = "UTC") -> Explanation:
        """Who would be picked at ``at``, and why (nothing is written); daily caps count
        the day in ``zone``."""
        loaded = self._load(self._row(rotation_id))
        return rules.pick(loaded.rotation, self._booked_today(loaded.rotation, at, zone))

    # --- changing the rotation -------------------------------------------------------

    def create(
        self,
        org_id: str,
        name: str,
        *,
        users: Iterable[str] = (),
        teams: Iterable[str] = (),
        policy: NewMemberPolicy = NewMemberPolicy.RESET,
        id_factory: Callable[[], str] = _new_id,
    ) -> Rotation:
        clean = " ".join(name.split())
        if not clean:
            raise ValidationError("name", "a rotation needs a name")
        row = RotationRow(
            id=id_factory(), org_id=org_id, name=clean, policy=NewMemberPolicy(policy).value,
            users=[], version=0, epoch=0, created_at=self.clock(),
        )  # fmt: skip
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except exc.IntegrityError as error:
            raise ConflictError(
                f"A rotation named {clean!r} already exists in org {org_id}",
                hint="Choose another name, or add members to the existing rotation.",
            ) from error
        for team in sorted(set(teams)):
            self.session.add(RotationTeamRow(rotation_id=row.id, team=team))
        self.session.flush()
        return self._resync(row.id, add_users=users)

    def add_member(self, rotation_id: str, email: str) -> Rotation:
        """List ``email`` by name; under the reset policy, every count restarts at 0."""
        return self._resync(rotation_id, add_users=[email])

    def remove_member(self, rotation_id: str, email: str) -> Rotation:
        """Unlist ``email``; they stay while one of the rotation's teams brings them in."""
        return self._resync(rotation_id, remove_users=[email])

    def add_team(self, rotation_id: str, team: str) -> Rotation:
        row = self._row(rotation_id)
        if self.session.get(RotationTeamRow, (row.id, team)) is None:
            self.session.add(RotationTeamRow(rotation_id=row.id, team=team))
            self.session.flush()
        return self._resync(row.id)

    def remove_team(self, rotation_id: str, team: str) -> Rotation:
        row = self._row(rotation_id)
        self.session.execute(
            sa.delete(RotationTeamRow).where(
                RotationTeamRow.rotation_id == row.id, RotationTeamRow.team == team
            )
        )
        return self._resync(row.id)

    def set_team(self, org_id: str, team: str, emails: Iterable[str]) -> list[Rotation]:
        """Replace a team's members; every rotation listing the team follows."""
        wanted = {normalize_email(e) for e in emails}
        self.session.execute(
            sa.delete(TeamMemberRow).where(
                TeamMemberRow.org_id == org_id, TeamMemberRow.team == team
            )
        )
        self.session.add_all(TeamMemberRow(org_id=org_id, team=team, email=e) for e in wanted)
        self.session.flush()
        listing = (
            sa.select(RotationRow.id)
            .join(RotationTeamRow, RotationTeamRow.rotation_id == RotationRow.id)
            .where(RotationRow.org_id == org_id, RotationTeamRow.team == team)
            .order_by(RotationRow.id)
        )
        return [self._resync(rid) for rid in self.session.scalars(listing).all()]

    def set_available(self, rotation_id: str, email: str, available: bool) -> Rotation:
        """The availability toggle (training, holidays)."""

        def toggle(loaded: _Loaded) -> tuple[_Loaded, Rotation]:
            changed = rules.set_available(loaded.rotation, email, available)
            return loaded.but(changed), changed

        return self._change(rotation_id, toggle)[1]

    def configure_member(
        self,
        rotation_id: str,
        email: str,
        *,
        weight: float | None = None,
        daily_cap: int | None = None,
        clear_cap: bool = False,
    ) -> Rotation:
        """Set a member's weight and/or daily cap (``clear_cap`` removes the cap)."""

        def configure(loaded: _Loaded) -> tuple[_Loaded, Rotation]:
            member = loaded.rotation.member(email)
            changes: dict[str, Any] = {}
            if weight is not None:
                changes["weight"] = weight
            if daily_cap is not None or clear_cap:
                changes["daily_cap"] = None if clear_cap else daily_cap
            changed = loaded.rotation.with_member(dataclasses.replace(member, **changes))
            return loaded.but(changed), changed

        return self._change(rotation_id, configure)[1]

    # --- booking ---------------------------------------------------------------------

    def book(
        self,
        rotation_id: str,
        meeting_id: str,
        at: datetime,
        *,
        member: str | None = None,
        zone: str = "UTC",
    ) -> Booking:
        """Pick (or take the rep's ``member`` override), count it, store the explanation.

        Daily caps count the bookings made on ``at``'s day in ``zone``."""
        at = utc(at, "at")
        if self._booking_row(meeting_id) is not None:
            raise _already_booked(meeting_id)
        override = normalize_email(member, "member") if member else None

        def choose(loaded: _Loaded) -> tuple[_Loaded, tuple[Explanation, str]]:
            rotation = loaded.rotation
            explanation = rules.pick(rotation, self._booked_today(rotation, at, zone))
            chosen = override or explanation.chosen
            if chosen is None:
                raise ConflictError(
                    f"Nobody in rotation {rotation.name!r} can take a meeting now",
                    hint="Toggle a member back to available, raise a daily cap, or pick "
                    "a member by hand.",
                )
            return loaded.but(rules.book(rotation, chosen, at)), (explanation, chosen)

        loaded, (explanation, chosen) = self._change(rotation_id, choose)
        row = RotationBookingRow(
            rotation_id=loaded.rotation.id, rotation_version=loaded.version, epoch=loaded.epoch,
            meeting_id=meeting_id, member=chosen, suggested=explanation.chosen,
            explanation=explanation_to_json(explanation), booked_at=at,
            state=BookingState.BOOKED.value, ended_at=None,
        )  # fmt: skip
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except exc.IntegrityError as error:  # booked concurrently: the caller rolls back
            raise _already_booked(meeting_id) from error
        return _booking(row)

    def end_booking(self, meeting_id: str, state: BookingState | str) -> Booking | None:
        """The meeting was cancelled or deleted: take its count back, once.

        ``state`` may be the meeting's new :class:`~crm_meetings.model.MeetingStatus`
        (``cancelled`` or ``deleted``): call it in the unit of work of the cancel or delete
        action. Returns the booking, or ``None`` when no rotation booked the meeting.
        """
        final = BookingState(state)
        if final is BookingState.BOOKED:
            raise ValidationError("state", "a booking ends as cancelled or deleted")
        row = self._booking_row(meeting_id, lock=True)
        if row is None:
            return None
        if row.state != BookingState.BOOKED.value:
            if final is BookingState.DELETED:
                row.state = final.value  # a cancelled meeting deleted later: no second unbook
            return _booking(row)
        epoch = row.epoch
        member = row.member

        def give_back(loaded: _Loaded) -> tuple[_Loaded, None]:
            if epoch != loaded.epoch:  # booked before the last reset: nothing to undo
                return loaded, None
            return loaded.but(rules.unbook(loaded.rotation, member)), None

        self._change(row.rotation_id, give_back)
        row.state = final.value
        row.ended_at = self.clock()
        self.session.flush()
        return _booking(row)

    # --- the atomic step -------------------------------------------------------------

    def _change(
        self, rotation_id: str, step: Callable[[_Loaded], tuple[_Loaded, T]]
    ) -> tuple[_Loaded, T]:
        """Apply ``step`` to fresh rows and swap the version; on a lost race, again.

        Returns the state ``step`` started from (its ``version`` is the one the change
        was computed from) and what ``step`` returned.
        """
        for _ in range(_RETRIES):
            loaded = self._load(self._row(rotation_id, lock=self.lock_rows))
            changed, result = step(loaded)
            if self._swap(loaded, changed):
                return loaded, result
        raise ConflictError(
            f"Rotation {rotation_id} kept changing while we tried to update it",
            hint="Try again in a moment.",
        )

    def _resync(
        self,
        rotation_id: str,
        *,
        add_users: Iterable[str] = (),
        remove_users: Iterable[str] = (),
    ) -> Rotation:
        """Recompute membership (users listed by name + teams) under the rotation's policy."""
        added = [normalize_email(u) for u in add_users]
        removed = {normalize_email(u) for u in remove_users}

        def resync(loaded: _Loaded) -> tuple[_Loaded, Rotation]:
            unknown = sorted(removed - set(loaded.users))
            if unknown:
                raise NotFoundError(
                    f"{unknown[0]} is not listed by name in rotation {loaded.rotation.name!r}",
                    hint="Members who come from a team leave when the team changes.",
                )
            users = [u for u in loaded.users if u not in removed]
            users += [u for u in dict.fromkeys(added) if u not in users]
            changed = rules.sync_members(
                loaded.rotation, users=users, teams=self._teams(loaded.rotation.id)
            )
            joined = {m.email for m in changed.members} - {m.email for m in loaded.rotation.members}
            reset = bool(joined) and changed.policy is NewMemberPolicy.RESET
            epoch = loaded.epoch + 1 if reset else loaded.epoch
            new = dataclasses.replace(loaded, rotation=changed, users=tuple(users), epoch=epoch)
            return new, changed

        return self._change(rotation_id, resync)[1]

    def _swap(self, loaded: _Loaded, changed: _Loaded) -> bool:
        """Compare-and-swap the version, then write the members; False if we lost."""
        swapped = self.session.execute(
            sa.update(RotationRow)
            .where(RotationRow.id == loaded.rotation.id, RotationRow.version == loaded.version)
            .values(version=loaded.version + 1, users=list(changed.users), epoch=changed.epoch)
            .execution_options(synchronize_session=False)
        )
        if swapped.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self._write_members(changed.rotation)
        return True

    def _write_members(self, rotation: Rotation) -> None:
        query = (
            sa.select(RotationMemberRow)
            .where(RotationMemberRow.rotation_id == rotation.id)
            .execution_options(populate_existing=True)
        )
        rows = {row.email: row for row in self.session.scalars(query)}
        for gone in set(rows) - {m.email for m in rotation.members}:
            self.session.delete(rows.pop(gone))
        self.session.flush()
        for position, member in enumerate(rotation.members):
            row = rows.get(member.email)
            if row is None:
                row = RotationMemberRow(rotation_id=rotation.id, email=member.email)
                self.session.add(row)
            row.position = position
            row.booked = member.count
            row.available = member.available
            row.weight = member.weight
            row.daily_cap = member.daily_cap
            row.last_scheduled = member.last_scheduled
            row.direct = member.direct
            row.teams = sorted(member.teams)
        self.session.flush()

    # --- loading ---------------------------------------------------------------------

    def _row(self, ref: str, *, org_id: str | None = None, lock: bool = False) -> RotationRow:
        query = sa.select(RotationRow)
        if org_id is None:
            query = query.where(RotationRow.id == ref)
        else:
            query = query.where(
                RotationRow.org_id == org_id, sa.or_(RotationRow.id == ref, RotationRow.name == ref)
            )
        missing = NotFoundError(
            f"Rotation {ref} does not exist",
            hint="List rotations with `crm-meetings rotation show`.",
        )
        return one(self.session, query, missing, lock=lock)

    def _load(self, row: RotationRow) -> _Loaded:
        query = (
            sa.select(RotationMemberRow)
            .where(RotationMemberRow.rotation_id == row.id)
            .order_by(RotationMemberRow.position)
            .execution_options(populate_existing=True)
        )
        members = tuple(
            Member(
                email=m.email,
                count=m.booked,
                available=m.available,
                weight=m.weight,
                daily_cap=m.daily_cap,
                last_scheduled=m.last_scheduled,
                teams=frozenset(str(t) for t in m.teams),
                direct=m.direct,
            )
            for m in self.session.scalars(query)
        )
        teams = self.session.scalars(
            sa.select(RotationTeamRow.team).where(RotationTeamRow.rotation_id == row.id)
        ).all()
        rotation = Rotation(
            id=row.id,
            name=row.name,
            members=members,
            teams=frozenset(teams),
            policy=NewMemberPolicy(row.policy),
        )
        return _Loaded(rotation, tuple(str(u) for u in row.users), row.version, row.epoch)

    def _teams(self, rotation_id: str) -> dict[str, list[str]]:
        query = (
            sa.select(RotationTeamRow.team, TeamMemberRow.email)
            .select_from(RotationTeamRow)
            .join(RotationRow, RotationRow.id == RotationTeamRow.rotation_id)
            .outerjoin(
                TeamMemberRow,
                sa.and_(
                    TeamMemberRow.org_id == RotationRow.org_id,
                    TeamMemberRow.team == RotationTeamRow.team,
                ),
            )
            .where(RotationTeamRow.rotation_id == rotation_id)
            .order_by(RotationTeamRow.team, TeamMemberRow.email)
        )
        teams: dict[str, list[str]] = {}
        for team, email in self.session.execute(query):
            members = teams.setdefault(team, [])
            if email is not None:
                members.append(email)
        return teams

    def _booked_today(self, rotation: Rotation, at: datetime, zone: str) -> dict[str, int]:
        tz = ZoneInfo(zone)
        day = utc(at, "at").astimezone(tz).date()
        start = datetime.combine(day, time(), tz).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
        query = (
            sa.select(RotationBookingRow.member, sa.func.count())
            .where(
                RotationBookingRow.rotation_id == rotation.id,
                RotationBookingRow.state == BookingState.BOOKED.value,
                RotationBookingRow.booked_at >= start,
                RotationBookingRow.booked_at < end,
            )
            .group_by(RotationBookingRow.member)
        )
        return {member: int(n) for member, n in self.session.execute(query)}

    def _booking_row(self, meeting_id: str, *, lock: bool = False) -> RotationBookingRow | None:
        query = sa.select(RotationBookingRow).where(RotationBookingRow.meeting_id == meeting_id)
        return first(self.session, query, lock=lock)
