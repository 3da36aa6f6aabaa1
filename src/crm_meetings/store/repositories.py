"""Repositories: model values in, model values out; ORM rows stay inside.

Every repository works on the SQLAlchemy session of one unit of work
(:class:`~crm_meetings.store.unit_of_work.UnitOfWork`), so what several repositories do in
one ``with store.transaction()`` block commits or rolls back together. New repositories
subclass :class:`Repository` and are reached with ``uow.repository(TheirRepository)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import exc, orm

from crm_meetings.errors import ConflictError, CrmMeetingsError, NotFoundError, ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingStatus,
    Participant,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
    normalize_email,
)
from crm_meetings.store.statements import upsert
from crm_meetings.store.tables import (
    DEFAULT_ORG_ID,
    CheckpointRow,
    InviteeRow,
    MeetingRow,
    ParticipantRow,
    RelatedRecordRow,
    SessionRow,
    SyncRunRow,
)
from crm_meetings.store.values import (
    Checkpoint,
    RunCounters,
    SyncRun,
    SyncRunStatus,
    UpsertResult,
)

__all__ = [
    "CheckpointRepository",
    "Clock",
    "MeetingRepository",
    "Repository",
    "SessionRepository",
    "SyncRunRepository",
    "utc_now",
]

Clock = Callable[[], datetime]
_IN_CHUNK: Final = 500  # ids per IN (...) list: well below every backend's parameter limit


def utc_now() -> datetime:
    return datetime.now(UTC)


class Repository:
    """Base of every repository: the unit of work's session and its clock."""

    def __init__(self, session: orm.Session, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


# --- meetings -------------------------------------------------------------------------
#
# Meetings are read and written with Core statements on the tables, most of them built
# once below with bound parameters: loading rows as ORM objects (with their children by
# selectin) took four times as long, and every action reads and writes a meeting. This
# repository never loads a meeting row as an ORM object, so a Core write here cannot leave
# one stale in its session (the contact map's read-only derivation in contacts/store.py
# does load them, in units of work that write no meeting).

_MEETING: Final = cast(sa.Table, MeetingRow.__table__)
_INVITEE: Final = cast(sa.Table, InviteeRow.__table__)
_RELATED: Final = cast(sa.Table, RelatedRecordRow.__table__)
_M = _MEETING.c


def _meeting_values(meeting: Meeting) -> dict[str, Any]:
    """Every column of ``meeting``'s row that may change (not id, org, CRM, UID, created)."""
    return {
        "crm_record_id": meeting.crm_record_id,
        "sequence": meeting.sequence,
        "version": meeting.version,
        "status": meeting.status.value,
        "subject": meeting.subject,
        "description": meeting.description,
        "notes": meeting.notes,
        "location": meeting.location,
        "join_url": meeting.join_url,
        "starts_at": meeting.start,
        "ends_at": meeting.end,
        "timezone": meeting.timezone,
        "organizer_email": meeting.organizer.email,
        "organizer_name": meeting.organizer.name,
        "record_type": meeting.record_type,
        "provider": meeting.provider,
        "provider_meeting_id": meeting.provider_meeting_id,
        "updated_at": meeting.updated_at,
        "crm_modified_at": meeting.crm_modified_at,
    }


def _invitee_values(meeting: Meeting) -> list[dict[str, Any]]:
    return [
        {
            "meeting_id": meeting.id,
            "position": position,
            "email": invitee.email,
            "name": invitee.name,
            "response": invitee.response.value,
            "optional": invitee.optional,
            "relation_type": invitee.crm_relation.object_type if invitee.crm_relation else None,
            "relation_id": invitee.crm_relation.record_id if invitee.crm_relation else None,
        }
        for position, invitee in enumerate(meeting.invitees)
    ]


def _related_values(meeting: Meeting) -> list[dict[str, Any]]:
    return [
        {
            "meeting_id": meeting.id,
            "position": position,
            "object_type": ref.object_type,
            "record_id": ref.record_id,
        }
        for position, ref in enumerate(meeting.related)
    ]


def _invitee(row: sa.Row[Any]) -> Invitee:
    relation = (
        RecordRef(row.relation_type, row.relation_id)
        if row.relation_type is not None and row.relation_id is not None
        else None
    )
    return Invitee(
        email=row.email,
        name=row.name,
        response=ResponseStatus(row.response),
        optional=row.optional,
        crm_relation=relation,
    )


def _to_meeting(
    row: sa.Row[Any], invitees: Sequence[Invitee], related: Sequence[RecordRef]
) -> Meeting:
    return Meeting(
        id=row.id,
        crm=CrmKind(row.crm),
        subject=row.subject,
        start=row.starts_at,
        end=row.ends_at,
        timezone=row.timezone,
        organizer=Person(email=row.organizer_email, name=row.organizer_name),
        uid=row.uid,
        crm_record_id=row.crm_record_id,
        description=row.description,
        notes=row.notes,
        location=row.location,
        join_url=row.join_url,
        invitees=tuple(invitees),
        related=tuple(related),
        record_type=row.record_type,
        status=MeetingStatus(row.status),
        sequence=row.sequence,
        provider=row.provider,
        provider_meeting_id=row.provider_meeting_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        crm_modified_at=row.crm_modified_at,
        version=row.version,
    )


def _meetings_where(*conditions: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return sa.select(_MEETING).where(*conditions)


_IDS: Final = sa.bindparam("ids", expanding=True, type_=sa.String())
_INVITEES_OF: Final = (
    sa.select(_INVITEE)
    .where(_INVITEE.c.meeting_id.in_(_IDS))
    .order_by(_INVITEE.c.meeting_id, _INVITEE.c.position)
)
_RELATED_OF: Final = (
    sa.select(_RELATED)
    .where(_RELATED.c.meeting_id.in_(_IDS))
    .order_by(_RELATED.c.meeting_id, _RELATED.c.position)
)
_BY_ID: Final = _meetings_where(_M.id == sa.bindparam("id"))
_BY_UID: Final = _meetings_where(_M.uid == sa.bindparam("uid"))
_BY_CRM_RECORD: Final = _meetings_where(
    _M.org_id == sa.bindparam("org_id"),
    _M.crm == sa.bindparam("crm"),
    _M.crm_record_id == sa.bindparam("record_id"),
)
_BY_REFERENCE: Final = _meetings_where(
    _M.org_id == sa.bindparam("org_id"),
    sa.or_(
        (_M.crm == sa.bindparam("crm")) & (_M.crm_record_id == sa.bindparam("reference")),
        _M.id == sa.bindparam("reference"),
    ),
)
_BY_PROVIDER_MEETINGS: Final = _meetings_where(
    _M.org_id == sa.bindparam("org_id"),
    _M.provider == sa.bindparam("provider"),
    _M.provider_meeting_id.in_(_IDS),
).order_by(_M.starts_at, _M.id)
_FOR_RECORD: Final = _meetings_where(
    _M.org_id == sa.bindparam("org_id"),
    _M.id.in_(
        sa.select(_RELATED.c.meeting_id).where(
            _RELATED.c.object_type == sa.bindparam("object_type"),
            _RELATED.c.record_id == sa.bindparam("record_id"),
        )
    )
    | _M.id.in_(
        sa.select(_INVITEE.c.meeting_id).where(
            _INVITEE.c.relation_type == sa.bindparam("object_type"),
            _INVITEE.c.relation_id == sa.bindparam("record_id"),
        )
    ),
).order_by(_M.starts_at, _M.id)
_STORED_ID: Final = sa.select(_M.id).where(_M.id == sa.bindparam("id"))
_INSERT_MEETING: Final = sa.insert(_MEETING)
_INSERT_INVITEES: Final = sa.insert(_INVITEE)
_INSERT_RELATED: Final = sa.insert(_RELATED)
# the bound names of the WHERE clause differ from the columns the SET clause binds
_UPDATE_MEETING: Final = sa.update(_MEETING).where(
    _M.id == sa.bindparam("where_id"),
    _M.version == sa.bindparam("where_version"),
    _M.crm == sa.bindparam("where_crm"),
    _M.uid == sa.bindparam("where_uid"),
)
_DELETE_INVITEES: Final = sa.delete(_INVITEE).where(_INVITEE.c.meeting_id == sa.bindparam("id"))
_DELETE_RELATED: Final = sa.delete(_RELATED).where(_RELATED.c.meeting_id == sa.bindparam("id"))


def _meeting_not_found(meeting_id: str) -> NotFoundError:
    return NotFoundError(
        f"Meeting {meeting_id} does not exist",
        hint="Check the meeting id; a record page lists its meetings.",
    )


class MeetingRepository(Repository):
    """Meetings with their invitees (in order) and related records.

    ``get*`` raise :class:`NotFoundError`; ``find*`` return ``None`` or an empty list.
    Meetings belong to an org (``org_id``); ids and UIDs are unique across orgs.
    """

    def add(self, meeting: Meeting, *, org_id: str = DEFAULT_ORG_ID) -> Meeting:
        """Store a new meeting; :class:`ConflictError` if its id, UID or CRM record is taken."""
        row = {
            "id": meeting.id,
            "org_id": org_id,
            "crm": meeting.crm.value,
            "uid": meeting.uid,
            "created_at": meeting.created_at,
            **_meeting_values(meeting),
        }
        try:
            with self.session.begin_nested():
                self.session.execute(_INSERT_MEETING, row)
                self._insert_children(meeting)
        except exc.IntegrityError as error:
            raise ConflictError(
                f"Meeting {meeting.id} cannot be added: {self._taken_by(meeting, org_id)}",
                hint="Load the existing meeting and save your changes to it instead.",
            ) from error
        return meeting

    def _taken_by(self, meeting: Meeting, org_id: str) -> str:
        if self.session.execute(_STORED_ID, {"id": meeting.id}).first() is not None:
            return "a meeting with this id already exists"
        if self.find_by_uid(meeting.uid) is not None:
            return f"UID {meeting.uid} is already used by another meeting"
        if meeting.crm_record_id is not None:
            other = self.find_by_crm_record(meeting.crm, meeting.crm_record_id, org_id=org_id)
            if other is not None:
                return (
                    f"{meeting.crm} record {meeting.crm_record_id} already belongs to "
                    f"meeting {other.id}"
                )
        return "the database refused it"

    def get(self, meeting_id: str) -> Meeting:
        meeting = self._one(_BY_ID, id=meeting_id)
        if meeting is None:
            raise _meeting_not_found(meeting_id)
        return meeting

    def find_by_uid(self, uid: str) -> Meeting | None:
        """The meeting with this iCalendar UID (e.g. from a calendar reply), if any."""
        return self._one(_BY_UID, uid=uid)

    def get_by_uid(self, uid: str) -> Meeting:
        meeting = self.find_by_uid(uid)
        if meeting is None:
            raise NotFoundError(
                f"No meeting has the iCalendar UID {uid}",
                hint="The invitation may belong to another system or to a deleted meeting.",
            )
        return meeting

    def find_by_crm_record(
        self, crm: CrmKind | str, record_id: str, *, org_id: str = DEFAULT_ORG_ID
    ) -> Meeting | None:
        """The meeting stored for a CRM's own event / meeting record."""
        return self._one(_BY_CRM_RECORD, org_id=org_id, crm=CrmKind(crm).value, record_id=record_id)

    def find_by_reference(
        self, crm: CrmKind | str, reference: str, *, org_id: str = DEFAULT_ORG_ID
    ) -> Meeting | None:
        """The org's meeting stored for ``crm``'s record ``reference``, else the org's
        meeting whose own id is ``reference`` (one query for both)."""
        crm_value = CrmKind(crm).value
        rows = self._load(_BY_REFERENCE, org_id=org_id, crm=crm_value, reference=reference)
        by_record = [m for m in rows if m.crm.value == crm_value and m.crm_record_id == reference]
        chosen = by_record or rows
        return chosen[0] if chosen else None

    def find_by_provider_meeting(
        self, provider: str, provider_meeting_id: str, *, org_id: str = DEFAULT_ORG_ID
    ) -> list[Meeting]:
        """Meetings on this conferencing meeting id, by start (recurring ones share one)."""
        found = self.find_by_provider_meetings(provider, [provider_meeting_id], org_id=org_id)
        return found.get(provider_meeting_id, [])

    def find_by_provider_meetings(
        self, provider: str, provider_meeting_ids: Iterable[str], *, org_id: str = DEFAULT_ORG_ID
    ) -> dict[str, list[Meeting]]:
        """:meth:`find_by_provider_meeting` for many ids at once (one query per 500 ids):
        conferencing meeting id -> its meetings by start; ids no meeting uses are absent."""
        found: dict[str, list[Meeting]] = {}
        for chunk in _chunks(list(dict.fromkeys(provider_meeting_ids))):
            for meeting in self._load(
                _BY_PROVIDER_MEETINGS, org_id=org_id, provider=provider, ids=list(chunk)
            ):
                assert meeting.provider_meeting_id is not None  # matched on it
                found.setdefault(meeting.provider_meeting_id, []).append(meeting)
        return found

    def list_for_record(self, ref: RecordRef, *, org_id: str = DEFAULT_ORG_ID) -> list[Meeting]:
        """Meetings for a CRM record page: related to ``ref``, or inviting it, by start.

        ``IN (SELECT meeting_id …)`` rather than correlated ``EXISTS``: the database looks
        the record up in the (type, id) indexes once instead of probing every meeting.
        """
        return self._load(
            _FOR_RECORD, org_id=org_id, object_type=ref.object_type, record_id=ref.record_id
        )

    def list_by_organizer(
        self,
        email: str,
        *,
        org_id: str = DEFAULT_ORG_ID,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Meeting]:
        """An organizer's meetings by start, optionally those starting in [since, until)."""
        conditions = [
            _M.org_id == org_id,
            _M.organizer_email == normalize_email(email, "organizer"),
        ]
        if since is not None:
            conditions.append(_M.starts_at >= since)
        if until is not None:
            conditions.append(_M.starts_at < until)
        return self._load(_meetings_where(*conditions).order_by(_M.starts_at, _M.id))

    def save(self, meeting: Meeting, expected_version: int) -> Meeting:
        """Write ``meeting`` if the stored one is still at ``expected_version``.

        Returns the meeting as stored: its version is ``expected_version + 1`` or the
        meeting's own, whichever is higher (``Meeting.revise`` already bumps it). Raises
        :class:`ConflictError` when someone saved another version first. One conditional
        UPDATE: it matches only the expected version (and locks the row on PostgreSQL).
        """
        stored = dataclasses.replace(meeting, version=max(meeting.version, expected_version + 1))
        result = self.session.execute(
            _UPDATE_MEETING,
            {
                "where_id": meeting.id,
                "where_version": expected_version,
                "where_crm": meeting.crm.value,
                "where_uid": meeting.uid,
                **_meeting_values(stored),
            },
        )
        if int(getattr(result, "rowcount", 0)) != 1:
            raise self._not_saved(meeting, expected_version)
        invitees, related = self._children([meeting.id])
        if (
            tuple(invitees.get(meeting.id, ())) != stored.invitees
            or tuple(related.get(meeting.id, ())) != stored.related
        ):
            self._replace_children(stored)
        return stored

    def _not_saved(self, meeting: Meeting, expected_version: int) -> CrmMeetingsError:
        """Why the conditional UPDATE of :meth:`save` matched no row."""
        row = self.session.execute(_BY_ID, {"id": meeting.id}).first()
        if row is None:
            return _meeting_not_found(meeting.id)
        if row.version != expected_version:
            return ConflictError(
                f"Meeting {meeting.id} ({row.subject!r}) was changed by someone else: it is at "
                f"version {row.version}, your edit started from version {expected_version}",
                hint=f"Reload meeting {meeting.id} and apply your edit to version {row.version}.",
            )
        name = "crm" if row.crm != meeting.crm.value else "uid"
        return ValidationError(name, "cannot be changed once the meeting exists")

    def set_status(self, meeting_id: str, status: MeetingStatus | str) -> Meeting:
        """Mark a meeting scheduled, cancelled or deleted; SEQUENCE follows ``revise``."""
        current = self.get(meeting_id)
        changed, _ = current.revise(status=MeetingStatus(status), at=self.clock())
        if changed is current:
            return current
        return self.save(changed, expected_version=current.version)

    def _insert_children(self, meeting: Meeting) -> None:
        if meeting.invitees:
            self.session.execute(_INSERT_INVITEES, _invitee_values(meeting))
        if meeting.related:
            self.session.execute(_INSERT_RELATED, _related_values(meeting))

    def _replace_children(self, meeting: Meeting) -> None:
        # Delete first: the (meeting, position) and (meeting, email) unique keys would
        # otherwise collide when invitees are reordered.
        self.session.execute(_DELETE_INVITEES, {"id": meeting.id})
        self.session.execute(_DELETE_RELATED, {"id": meeting.id})
        self._insert_children(meeting)

    def _children(
        self, meeting_ids: Sequence[str]
    ) -> tuple[dict[str, list[Invitee]], dict[str, list[RecordRef]]]:
        """The invitees and related records of these meetings, in order, by meeting id."""
        invitees: dict[str, list[Invitee]] = {}
        related: dict[str, list[RecordRef]] = {}
        for chunk in _chunks(meeting_ids):
            for row in self.session.execute(_INVITEES_OF, {"ids": list(chunk)}):
                invitees.setdefault(row.meeting_id, []).append(_invitee(row))
            for row in self.session.execute(_RELATED_OF, {"ids": list(chunk)}):
                related.setdefault(row.meeting_id, []).append(
                    RecordRef(row.object_type, row.record_id)
                )
        return invitees, related

    def _load(self, query: sa.Select[Any], **params: Any) -> list[Meeting]:
        """The meetings ``query`` selects, in its order, with their children."""
        rows = self.session.execute(query, params).all()
        if not rows:
            return []
        invitees, related = self._children([row.id for row in rows])
        return [_to_meeting(row, invitees.get(row.id, ()), related.get(row.id, ())) for row in rows]

    def _one(self, query: sa.Select[Any], **params: Any) -> Meeting | None:
        found = self._load(query, **params)
        return found[0] if found else None


# --- sessions and participants --------------------------------------------------------


def _to_session(row: SessionRow) -> Session:
    return Session(
        provider=row.provider,
        provider_session_id=row.provider_session_id,
        provider_meeting_id=row.provider_meeting_id,
        start=row.starts_at,
        end=row.ends_at,
        participants=tuple(
            Participant(
                name=p.name,
                email=p.email,
                join_time=p.join_time,
                leave_time=p.leave_time,
                attended_seconds=p.attended_seconds,
            )
            for p in row.participants
        ),
    )


def _participant_rows(session: Session) -> list[ParticipantRow]:
    return [
        ParticipantRow(
            position=position,
            name=p.name,
            email=p.email,
            join_time=p.join_time,
            leave_time=p.leave_time,
            attended_seconds=p.attended_seconds,
        )
        for position, p in enumerate(session.participants)
    ]


class SessionRepository(Repository):
    """Sessions (times a meeting really ran), keyed by ``(provider, provider_session_id)``."""

    def upsert_many(self, sessions: Iterable[Session], meeting_id: str | None) -> UpsertResult:
        """Insert or update sessions of one meeting (``None``: not matched to a meeting yet).

        A session already stored with the same values is left alone, so replaying a sync
        writes nothing; a changed one is updated and its participants replaced.
        """
        return self.upsert_attached([(meeting_id, sessions)])

    def upsert_attached(
        self, attached: Iterable[tuple[str | None, Iterable[Session]]]
    ) -> UpsertResult:
        """:meth:`upsert_many` for several meetings' sessions at once: one existence check of
        the meetings, one read of the stored sessions, and new sessions inserted in bulk."""
        wanted: dict[tuple[str, str], tuple[Session, str | None]] = {}
        meeting_ids: set[str] = set()
        for meeting_id, sessions in attached:
            if meeting_id is not None:
                meeting_ids.add(meeting_id)
            for s in sessions:
                wanted[(s.provider, s.provider_session_id)] = (s, meeting_id)
        missing = sorted(meeting_ids - self._stored_meetings(sorted(meeting_ids)))
        if missing:
            raise NotFoundError(
                f"Cannot attach sessions to meeting {missing[0]}: it does not exist",
                hint="Store the meeting first, or upsert the sessions unmatched (None).",
            )
        existing = self._load(list(wanted))
        new = [
            (value, meeting_id)
            for key, (value, meeting_id) in wanted.items()
            if key not in existing
        ]
        inserted = len(new)
        updated = unchanged = 0
        participants = sum(len(value.participants) for value, _ in new)
        for key, row in existing.items():
            value, meeting_id = wanted[key]
            if row.meeting_id == meeting_id and _to_session(row) == value:
                unchanged += 1
                continue
            row.participants.clear()
            self.session.flush()
            updated += 1
            row.provider_meeting_id = value.provider_meeting_id
            row.meeting_id = meeting_id
            row.starts_at = value.start
            row.ends_at = value.end
            row.participants.extend(_participant_rows(value))
            participants += len(value.participants)
        self.session.flush()
        self._insert(new)
        return UpsertResult(inserted, updated, unchanged, participants)

    def _insert(self, new: Sequence[tuple[Session, str | None]]) -> None:
        """New sessions and their participants in bulk: one multi-row INSERT of sessions
        (their ids returned) and one of participants, instead of an ORM object per row."""
        if not new:
            return
        returned = self.session.execute(
            sa.insert(SessionRow).returning(
                SessionRow.provider, SessionRow.provider_session_id, SessionRow.id
            ),
            [
                {
                    "provider": value.provider,
                    "provider_session_id": value.provider_session_id,
                    "provider_meeting_id": value.provider_meeting_id,
                    "meeting_id": meeting_id,
                    "starts_at": value.start,
                    "ends_at": value.end,
                }
                for value, meeting_id in new
            ],
        )
        ids = {(provider, session_id): row_id for provider, session_id, row_id in returned}
        rows = [
            {
                "session_id": ids[(value.provider, value.provider_session_id)],
                "position": position,
                "name": p.name,
                "email": p.email,
                "join_time": p.join_time,
                "leave_time": p.leave_time,
                "attended_seconds": p.attended_seconds,
            }
            for value, _ in new
            for position, p in enumerate(value.participants)
        ]
        if rows:
            self.session.execute(sa.insert(ParticipantRow), rows)

    def _stored_meetings(self, meeting_ids: Sequence[str]) -> set[str]:
        """Which of ``meeting_ids`` the store holds."""
        found: set[str] = set()
        for chunk in _chunks(meeting_ids):
            found.update(
                self.session.scalars(sa.select(MeetingRow.id).where(MeetingRow.id.in_(chunk)))
            )
        return found

    def _load(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SessionRow]:
        by_provider: dict[str, list[str]] = {}
        for provider, session_id in keys:
            by_provider.setdefault(provider, []).append(session_id)
        found: dict[tuple[str, str], SessionRow] = {}
        for provider, session_ids in by_provider.items():
            for chunk in _chunks(session_ids):
                query = (
                    sa.select(SessionRow)
                    .options(orm.selectinload(SessionRow.participants))
                    .where(SessionRow.provider == provider)
                    .where(SessionRow.provider_session_id.in_(chunk))
                )
                for row in self.session.scalars(query):
                    found[(row.provider, row.provider_session_id)] = row
        return found

    def find(self, provider: str, provider_session_id: str) -> Session | None:
        row = self._load([(provider, provider_session_id)]).get((provider, provider_session_id))
        return None if row is None else _to_session(row)

    def list_for_meeting(self, meeting_id: str) -> list[Session]:
        """A meeting's sessions, earliest first."""
        return self._many(SessionRow.meeting_id == meeting_id)

    def list_for_meetings(self, meeting_ids: Iterable[str]) -> dict[str, list[Session]]:
        """:meth:`list_for_meeting` for many meetings at once (one query per 500 ids):
        meeting id -> its sessions, earliest first (an empty list for a meeting without)."""
        found: dict[str, list[Session]] = {meeting_id: [] for meeting_id in meeting_ids}
        for chunk in _chunks(list(found)):
            for row in self.session.scalars(self._query(SessionRow.meeting_id.in_(chunk))):
                assert row.meeting_id is not None  # matched on it
                found[row.meeting_id].append(_to_session(row))
        return found

    def list_for_provider_meeting(self, provider: str, provider_meeting_id: str) -> list[Session]:
        """Every session of one conferencing meeting id, matched or not, earliest first."""
        return self._many(
            SessionRow.provider == provider, SessionRow.provider_meeting_id == provider_meeting_id
        )

    def _many(self, *conditions: sa.ColumnElement[bool]) -> list[Session]:
        return [_to_session(row) for row in self.session.scalars(self._query(*conditions))]

    @staticmethod
    def _query(*conditions: sa.ColumnElement[bool]) -> sa.Select[SessionRow]:
        return (
            sa.select(SessionRow)
            .options(orm.selectinload(SessionRow.participants))
            .where(*conditions)
            .order_by(SessionRow.starts_at, SessionRow.id)
        )


# --- sync checkpoints and runs --------------------------------------------------------


_SET_CHECKPOINT: Final = upsert(
    cast(sa.Table, CheckpointRow.__table__),
    ["org_id", "source", "object_name"],
    update=["cursor", "updated_at"],
)


class CheckpointRepository(Repository):
    """Where each incremental sync resumes: one cursor per (org, source, object)."""

    def get(self, org_id: str, source: str, object_name: str) -> str | None:
        return self.session.scalar(
            sa.select(CheckpointRow.cursor).where(
                CheckpointRow.org_id == org_id,
                CheckpointRow.source == source,
                CheckpointRow.object_name == object_name,
            )
        )

    def set(self, org_id: str, source: str, object_name: str, cursor: str) -> None:
        """Record ``cursor``; call it in the transaction that stored what it covers."""
        values: dict[str, Any] = {
            "org_id": org_id,
            "source": source,
            "object_name": object_name,
            "cursor": cursor,
            "updated_at": self.clock(),
        }
        self.session.execute(_SET_CHECKPOINT.on(self.session), values)

    def list_for_org(self, org_id: str = DEFAULT_ORG_ID) -> list[Checkpoint]:
        """An org's checkpoints, for the status page and ``doctor``."""
        rows = self.session.scalars(
            sa.select(CheckpointRow)
            .where(CheckpointRow.org_id == org_id)
            .order_by(CheckpointRow.source, CheckpointRow.object_name)
        )
        return [Checkpoint(r.org_id, r.source, r.object_name, r.cursor, r.updated_at) for r in rows]


def _to_run(row: SyncRunRow) -> SyncRun:
    return SyncRun(
        id=row.id,
        org_id=row.org_id,
        kind=row.kind,
        status=SyncRunStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        organizer=row.organizer,
        meeting_id=row.meeting_id,
        counters=RunCounters.from_json(row.counters),
    )


class SyncRunRepository(Repository):
    """The report of each sync run: when, what for, how it ended, and its counters."""

    def start(
        self,
        kind: str,
        *,
        org_id: str = DEFAULT_ORG_ID,
        organizer: str | None = None,
        meeting_id: str | None = None,
    ) -> int:
        """Open a run (status ``running``) and return its id."""
        row = SyncRunRow(
            org_id=org_id,
            kind=kind,
            status=SyncRunStatus.RUNNING.value,
            started_at=self.clock(),
            organizer=normalize_email(organizer, "organizer") if organizer else None,
            meeting_id=meeting_id,
            counters=RunCounters().to_json(),
        )
        self.session.add(row)
        self.session.flush()
        return row.id

    def progress(self, run_id: int, counters: RunCounters) -> None:
        """Store the counters so far of a run that is still going."""
        self._running(run_id).counters = counters.to_json()
        self.session.flush()

    def finish(self, run_id: int, status: SyncRunStatus | str, counters: RunCounters) -> SyncRun:
        """Close a run as succeeded, failed or partial, with its final counters."""
        final = SyncRunStatus(status)
        if final is SyncRunStatus.RUNNING:
            raise ValidationError("status", "a run finishes as succeeded, failed or partial")
        row = self._running(run_id)
        row.status = final.value
        row.finished_at = self.clock()
        row.counters = counters.to_json()
        self.session.flush()
        return _to_run(row)

    def get(self, run_id: int) -> SyncRun:
        return _to_run(self._row(run_id))

    def list_recent(self, limit: int = 20, *, org_id: str | None = None) -> list[SyncRun]:
        """The newest runs first; all orgs unless ``org_id`` is given."""
        query = sa.select(SyncRunRow).order_by(SyncRunRow.started_at.desc(), SyncRunRow.id.desc())
        if org_id is not None:
            query = query.where(SyncRunRow.org_id == org_id)
        return [_to_run(row) for row in self.session.scalars(query.limit(limit))]

    def _row(self, run_id: int) -> SyncRunRow:
        row = self.session.get(SyncRunRow, run_id)
        if row is None:
            raise NotFoundError(
                f"Sync run {run_id} does not exist",
                hint="Check the run id against the recent runs on the status page.",
            )
        return row

    def _running(self, run_id: int) -> SyncRunRow:
        row = self._row(run_id)
        if row.status != SyncRunStatus.RUNNING.value:
            raise ConflictError(
                f"Sync run {run_id} already finished ({row.status})",
                hint="Start a new run instead of reusing a finished one.",
            )
        return row
