"""The shared meeting model: frozen values, validated on construction, no I/O.

Every datetime is timezone-aware and kept in UTC; the organizer's IANA zone is kept
beside it for display and for the .ics VTIMEZONE. E-mail addresses are bare, lower-case
addresses: a display-name form such as ``Bob <b@x.com>`` is rejected by the constructors
and split by :func:`parse_address`.

Edits produce a new value and a :class:`MeetingChange` (:func:`diff`), whose
classification of fields decides whether invitees are sent the change and whether the
iCalendar SEQUENCE is bumped (RFC 5546 §2.1.4).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from crm_meetings.errors import ValidationError

__all__ = [
    "ANNOUNCED_FIELDS",
    "FIELD_CLASSES",
    "IMMUTABLE_FIELDS",
    "INTERNAL_FIELDS",
    "RESCHEDULING_FIELDS",
    "CrmKind",
    "FieldClass",
    "Invitee",
    "Meeting",
    "MeetingChange",
    "MeetingStatus",
    "Participant",
    "Person",
    "RecordRef",
    "ResponseStatus",
    "Session",
    "apply_change",
    "diff",
    "new_meeting",
    "normalize_email",
    "parse_address",
    "utc",
]

MAX_SUBJECT_LENGTH: Final = 255
MAX_TEXT_LENGTH: Final = 32_000


class CrmKind(StrEnum):
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"
    ZOHO = "zoho"


class MeetingStatus(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    DELETED = "deleted"


class ResponseStatus(StrEnum):
    """An invitee's answer, named as iCalendar's PARTSTAT (RFC 5545 §3.2.12)."""

    NEEDS_ACTION = "NEEDS-ACTION"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    TENTATIVE = "TENTATIVE"


# --- small validators -----------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = re.compile(r"[\r\n]")


def utc(value: datetime, field_name: str = "datetime") -> datetime:
    """Return ``value`` in UTC; a naive datetime is an error, not a guess."""
    if not isinstance(value, datetime):
        raise ValidationError(field_name, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            field_name,
            f"{value.isoformat()} has no timezone",
            hint="Give an aware datetime, e.g. 2026-03-01T09:00:00+01:00 or with tzinfo=UTC.",
        )
    return value.astimezone(UTC)


def _text(value: object, field_name: str, *, max_length: int, single_line: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError(field_name, f"expected text, got {type(value).__name__}")
    if _CONTROL.search(value):
        raise ValidationError(field_name, "contains control characters")
    if single_line and _LINE_BREAK.search(value):
        raise ValidationError(field_name, "must be a single line (no CR or LF)")
    if len(value) > max_length:
        raise ValidationError(field_name, f"is {len(value)} characters; at most {max_length}")
    return value


def _zone(name: str, field_name: str = "timezone") -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValidationError(field_name, f"{name!r} is not an IANA timezone name")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            field_name,
            f"{name!r} is not an IANA timezone name",
            hint="Use a name such as Europe/Paris, America/New_York or UTC.",
        ) from exc
    return name


def normalize_email(value: str, field_name: str = "email") -> str:
    """Validate a bare address and return it lower-cased.

    ``Bob <b@x.com>`` is rejected here (use :func:`parse_address` to split it), so a
    display name can never end up stored as part of an address.
    """
    if not isinstance(value, str):
        raise ValidationError(field_name, f"expected an e-mail address, got {type(value).__name__}")
    candidate = value.strip()
    if "<" in candidate or ">" in candidate or _LINE_BREAK.search(candidate):
        raise ValidationError(
            field_name,
            f"{value!r} is not a bare e-mail address",
            hint="Give only the address (b@x.com); split 'Bob <b@x.com>' with parse_address().",
        )
    try:
        return _validated_address(candidate)
    except EmailNotValidError as exc:
        raise ValidationError(
            field_name, f"{value!r} is not a valid e-mail address: {exc}"
        ) from exc


@functools.lru_cache(maxsize=8192)
def _validated_address(candidate: str) -> str:
    """The normalized address (syntax only, no DNS): a pure function, so each address is
    checked once per process, not again every time a stored meeting is loaded."""
    checked = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    return checked.normalized.lower()


def parse_address(value: str, field_name: str = "email") -> tuple[str, str]:
    """Split ``'Bob <b@x.com>'`` or ``'b@x.com'`` into ``(name, address)``."""
    if not isinstance(value, str) or _LINE_BREAK.search(value):
        raise ValidationError(field_name, f"{value!r} is not an e-mail address")
    found = getaddresses([value])
    if len(found) != 1 or not found[0][1]:
        raise ValidationError(field_name, f"{value!r} is not a single e-mail address")
    name, address = found[0]
    return name.strip(), normalize_email(address, field_name)


def _ident(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValidationError(field_name, f"{value!r} is not a valid identifier")
    if _CONTROL.search(value) or _LINE_BREAK.search(value) or len(value) > 255:
        raise ValidationError(field_name, f"{value!r} is not a valid identifier")
    return value


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


# --- people and records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """Someone with an address: an organizer, or a CRM user."""

    email: str
    name: str = ""

    def __post_init__(self) -> None:
        _set(self, "email", normalize_email(self.email))
        _set(self, "name", _text(self.name, "name", max_length=255, single_line=True).strip())

    @classmethod
    def parse(cls, value: str) -> Person:
        name, email = parse_address(value)
        return cls(email=email, name=name)


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A CRM record by object type and id, e.g. ``RecordRef("Opportunity", "006…")``."""

    object_type: str
    record_id: str

    def __post_init__(self) -> None:
        _ident(self.object_type, "object_type")
        _ident(self.record_id, "record_id")

    def __str__(self) -> str:
        return f"{self.object_type}/{self.record_id}"


@dataclass(frozen=True, slots=True)
class Invitee:
    """An invited person; ``crm_relation`` is the CRM record they are (Contact, Lead…)."""

    email: str
    name: str = ""
    response: ResponseStatus = ResponseStatus.NEEDS_ACTION
    optional: bool = False
    crm_relation: RecordRef | None = None

    def __post_init__(self) -> None:
        _set(self, "email", normalize_email(self.email))
        _set(self, "name", _text(self.name, "name", max_length=255, single_line=True).strip())
        _set(self, "response", ResponseStatus(self.response))

    @classmethod
    def parse(cls, value: str, **kwargs: Any) -> Invitee:
        name, email = parse_address(value)
        return cls(email=email, name=name, **kwargs)

    def announced(self) -> tuple[str, str, bool]:
        """What the other invitees see of this one (their answer is not announced)."""
        return (self.email, self.name, self.optional)


# --- the meeting ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Meeting:
    """One meeting as crm-meetings knows it; construct new ones with :func:`new_meeting`."""

    id: str
    crm: CrmKind
    subject: str
    start: datetime
    end: datetime
    timezone: str
    organizer: Person
    uid: str
    crm_record_id: str | None = None
    description: str = ""
    notes: str = ""
    location: str = ""
    join_url: str | None = None
    invitees: tuple[Invitee, ...] = ()
    related: tuple[RecordRef, ...] = ()
    record_type: str | None = None
    status: MeetingStatus = MeetingStatus.SCHEDULED
    sequence: int = 0
    provider: str | None = None
    provider_meeting_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    crm_modified_at: datetime | None = None
    version: int = 1

    def __post_init__(self) -> None:
        _ident(self.id, "id")
        _set(self, "crm", CrmKind(self.crm))
        _ident(self.uid, "uid")
        subject = _text(self.subject, "subject", max_length=MAX_SUBJECT_LENGTH, single_line=True)
        if not subject.strip():
            raise ValidationError("subject", "must not be empty", hint="Give the meeting a title.")
        _set(self, "subject", subject.strip())
        for name in ("description", "notes"):
            _text(getattr(self, name), name, max_length=MAX_TEXT_LENGTH, single_line=False)
        _text(self.location, "location", max_length=255, single_line=True)
        if self.join_url is not None:
            _text(self.join_url, "join_url", max_length=2048, single_line=True)
            if not re.match(r"(?i)^https?://\S+$", self.join_url):
                raise ValidationError("join_url", f"{self.join_url!r} is not an http(s) URL")
        start = utc(self.start, "start")
        end = utc(self.end, "end")
        if end <= start:
            raise ValidationError(
                "end",
                f"ends at {end.isoformat()}, not after its start {start.isoformat()}",
                hint="Set an end time later than the start time.",
            )
        _set(self, "start", start)
        _set(self, "end", end)
        _zone(self.timezone)
        if not isinstance(self.organizer, Person):
            raise ValidationError("organizer", "expected a Person")
        invitees = tuple(self.invitees)
        seen: set[str] = set()
        for invitee in invitees:
            if not isinstance(invitee, Invitee):
                raise ValidationError("invitees", f"expected Invitee values, got {invitee!r}")
            if invitee.email in seen:
                raise ValidationError("invitees", f"{invitee.email} is invited twice")
            seen.add(invitee.email)
        _set(self, "invitees", invitees)
        related = tuple(self.related)
        if any(not isinstance(ref, RecordRef) for ref in related):
            raise ValidationError("related", "expected RecordRef values")
        _set(self, "related", related)
        _set(self, "status", MeetingStatus(self.status))
        if isinstance(self.sequence, bool) or not isinstance(self.sequence, int):
            raise ValidationError("sequence", "must be an integer")
        if self.sequence < 0:
            raise ValidationError("sequence", "must not be negative (RFC 5545 §3.8.7.4)")
        if self.version < 1:
            raise ValidationError("version", "must be at least 1")
        for name in ("created_at", "updated_at", "crm_modified_at"):
            value = getattr(self, name)
            if value is not None:
                _set(self, name, utc(value, name))

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def local_start(self) -> datetime:
        """The start in the organizer's zone, for display."""
        return self.start.astimezone(self.zone)

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(self.zone)

    def invitee(self, email: str) -> Invitee | None:
        wanted = normalize_email(email)
        return next((i for i in self.invitees if i.email == wanted), None)

    def revise(
        self, *, at: datetime | None = None, **changes: Any
    ) -> tuple[Meeting, MeetingChange]:
        """Apply field edits; bump SEQUENCE when invitees must be sent the result.

        Returns the new value and the change that leads to it. ``at`` stamps ``updated_at``.
        """
        unknown = set(changes) - set(FIELD_CLASSES)
        if unknown:
            raise ValidationError(sorted(unknown)[0], "is not a meeting field")
        immutable = set(changes) & IMMUTABLE_FIELDS
        for name in sorted(immutable):
            if changes[name] != getattr(self, name):
                raise ValidationError(name, "cannot be changed once the meeting exists")
        if "sequence" in changes:
            raise ValidationError("sequence", "is managed by revise(); do not set it")
        draft = dataclasses.replace(self, **changes)
        change = diff(self, draft)
        extra: dict[str, Any] = {}
        if change.bumps_sequence:
            extra["sequence"] = self.sequence + 1
        if change.changed:
            extra["version"] = self.version + 1
            if at is not None:
                extra["updated_at"] = at
        if not extra:
            return self, change
        final = dataclasses.replace(draft, **extra)
        return final, diff(self, final)


def new_meeting(
    *,
    crm: CrmKind | str,
    subject: str,
    start: datetime,
    end: datetime,
    timezone: str,
    organizer: Person,
    now: datetime,
    id_factory: Callable[[], str] = lambda: uuid.uuid4().hex,
    uid_domain: str = "crm-meetings",
    **fields: Any,
) -> Meeting:
    """A new meeting with a fresh local id and a stable iCalendar UID (RFC 5545 §3.8.4.7)."""
    meeting_id = id_factory()
    return Meeting(
        id=meeting_id,
        crm=CrmKind(crm),
        subject=subject,
        start=start,
        end=end,
        timezone=timezone,
        organizer=organizer,
        uid=f"{meeting_id}@{uid_domain}",
        created_at=now,
        updated_at=now,
        **fields,
    )


# --- what changed ---------------------------------------------------------------------


class FieldClass(StrEnum):
    """How a change to a meeting field reaches the invitees."""

    RESCHEDULING = "rescheduling"  # RFC 5546 §2.1.4 significant: time or status
    ANNOUNCED = "announced"  # shown in the invitation: sent, with SEQUENCE bumped
    INTERNAL = "internal"  # ours or the CRM's only: never sent
    IMMUTABLE = "immutable"  # fixed for the meeting's life


FIELD_CLASSES: Final[Mapping[str, FieldClass]] = {
    "id": FieldClass.IMMUTABLE,
    "crm": FieldClass.IMMUTABLE,
    "uid": FieldClass.IMMUTABLE,
    "created_at": FieldClass.IMMUTABLE,
    "start": FieldClass.RESCHEDULING,
    "end": FieldClass.RESCHEDULING,
    "status": FieldClass.RESCHEDULING,
    "subject": FieldClass.ANNOUNCED,
    "description": FieldClass.ANNOUNCED,
    "location": FieldClass.ANNOUNCED,
    "join_url": FieldClass.ANNOUNCED,
    "timezone": FieldClass.ANNOUNCED,
    "organizer": FieldClass.ANNOUNCED,
    "invitees": FieldClass.ANNOUNCED,
    "notes": FieldClass.INTERNAL,
    "crm_record_id": FieldClass.INTERNAL,
    "related": FieldClass.INTERNAL,
    "record_type": FieldClass.INTERNAL,
    "sequence": FieldClass.INTERNAL,
    "provider": FieldClass.INTERNAL,
    "provider_meeting_id": FieldClass.INTERNAL,
    "updated_at": FieldClass.INTERNAL,
    "crm_modified_at": FieldClass.INTERNAL,
    "version": FieldClass.INTERNAL,
}


def _fields_of(kind: FieldClass) -> frozenset[str]:
    return frozenset(name for name, cls in FIELD_CLASSES.items() if cls is kind)


RESCHEDULING_FIELDS: Final = _fields_of(FieldClass.RESCHEDULING)
ANNOUNCED_FIELDS: Final = _fields_of(FieldClass.ANNOUNCED)
INTERNAL_FIELDS: Final = _fields_of(FieldClass.INTERNAL)
IMMUTABLE_FIELDS: Final = _fields_of(FieldClass.IMMUTABLE)


@dataclass(frozen=True, slots=True)
class MeetingChange:
    """The difference between two versions of one meeting.

    ``values`` maps each changed field to its ``(old, new)`` pair. Invitee edits are
    summarised by e-mail: ``added``, ``removed`` and ``kept`` (kept invitees still get the
    update). A change of an invitee's answer alone is internal: nobody else is told.
    """

    values: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def changed(self) -> frozenset[str]:
        return frozenset(self.values)

    @property
    def rescheduled(self) -> bool:
        """Time or status changed: the significant changes of RFC 5546 §2.1.4."""
        return bool(self.changed & RESCHEDULING_FIELDS)

    @property
    def notify_invitees(self) -> bool:
        """Whether invitees must be sent this change (a REQUEST or a CANCEL)."""
        if self.changed & RESCHEDULING_FIELDS:
            return True
        announced = self.changed & ANNOUNCED_FIELDS
        if announced - {"invitees"}:
            return True
        return "invitees" in announced and bool(self.added or self.removed or self._renamed)

    @property
    def _renamed(self) -> bool:
        if "invitees" not in self.values:
            return False
        old, new = self.values["invitees"]
        before = {i.email: i.announced() for i in old}
        return any(before.get(i.email, i.announced()) != i.announced() for i in new)

    @property
    def bumps_sequence(self) -> bool:
        """Every change we send is a new revision, so SEQUENCE goes up by one."""
        return self.notify_invitees

    def __bool__(self) -> bool:
        return bool(self.values)


def diff(old: Meeting, new: Meeting) -> MeetingChange:
    """The change that turns ``old`` into ``new`` (two versions of the same meeting)."""
    for name in ("id", "uid", "crm"):
        if getattr(old, name) != getattr(new, name):
            raise ValidationError(name, "differs: these are two different meetings")
    if new.sequence < old.sequence:
        raise ValidationError(
            "sequence", f"would go down from {old.sequence} to {new.sequence} (RFC 5546 §2.1.4)"
        )
    values = {
        name: (getattr(old, name), getattr(new, name))
        for name in FIELD_CLASSES
        if getattr(old, name) != getattr(new, name)
    }
    old_emails = [i.email for i in old.invitees]
    new_emails = [i.email for i in new.invitees]
    return MeetingChange(
        values=values,
        added=tuple(e for e in new_emails if e not in old_emails),
        removed=tuple(e for e in old_emails if e not in new_emails),
        kept=tuple(e for e in new_emails if e in old_emails),
    )


def apply_change(meeting: Meeting, change: MeetingChange) -> Meeting:
    """Apply ``change`` to ``meeting``; the inverse of :func:`diff`."""
    updates: dict[str, Any] = {}
    for name, (old, new) in change.values.items():
        if getattr(meeting, name) != old:
            raise ValidationError(name, "does not hold the value this change starts from")
        updates[name] = new
    return dataclasses.replace(meeting, **updates) if updates else meeting


# --- what really happened -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Participant:
    """One attendance of one person in one session (a person may join twice)."""

    name: str
    join_time: datetime
    leave_time: datetime
    email: str | None = None
    attended_seconds: int | None = None

    def __post_init__(self) -> None:
        _set(self, "name", _text(self.name, "name", max_length=255, single_line=True).strip())
        if self.email is not None:
            _set(self, "email", normalize_email(self.email))
        join = utc(self.join_time, "join_time")
        leave = utc(self.leave_time, "leave_time")
        if leave < join:
            raise ValidationError("leave_time", "is before join_time")
        _set(self, "join_time", join)
        _set(self, "leave_time", leave)
        if self.attended_seconds is not None and self.attended_seconds < 0:
            raise ValidationError("attended_seconds", "must not be negative")

    @property
    def seconds_attended(self) -> int:
        if self.attended_seconds is not None:
            return self.attended_seconds
        return int((self.leave_time - self.join_time).total_seconds())

    @property
    def minutes_attended(self) -> int:
        """Whole minutes, rounded half up, as CRMs display them."""
        return (self.seconds_attended + 30) // 60


@dataclass(frozen=True, slots=True)
class Session:
    """One time a meeting really ran at the conferencing provider."""

    provider: str
    provider_session_id: str
    provider_meeting_id: str
    start: datetime
    end: datetime
    participants: tuple[Participant, ...] = ()

    def __post_init__(self) -> None:
        _ident(self.provider, "provider")
        _ident(self.provider_session_id, "provider_session_id")
        _ident(self.provider_meeting_id, "provider_meeting_id")
        start = utc(self.start, "start")
        end = utc(self.end, "end")
        if end < start:
            raise ValidationError("end", "is before the session's start")
        _set(self, "start", start)
        _set(self, "end", end)
        participants = tuple(self.participants)
        if any(not isinstance(p, Participant) for p in participants):
            raise ValidationError("participants", "expected Participant values")
        _set(self, "participants", participants)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def duration_minutes(self) -> int:
        return (int(self.duration.total_seconds()) + 30) // 60

    def attendee_emails(self) -> Iterable[str]:
        return sorted({p.email for p in self.participants if p.email})
