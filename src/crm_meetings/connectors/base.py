"""The one protocol every CRM connector implements, and the values it trades in.

A connector maps one CRM's meeting records onto :class:`~crm_meetings.model.Meeting`
and back, batches writes as far as the CRM allows, and translates the vendor's errors
onto :mod:`crm_meetings.errors` at one boundary. It never sends mail and never touches
the store. A new CRM is one module implementing :class:`Connector` plus one fixture in
``tests/contract/``.

Identity: a meeting read from the CRM that crm-meetings did not create gets a derived
local id and UID (:func:`derived_identity`), so reading the same record twice gives the
same values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from crm_meetings.errors import CrmMeetingsError
from crm_meetings.model import CrmKind, Meeting, MeetingChange, Person, RecordRef, Session
from crm_meetings.transport import CallCounter

__all__ = [
    "BatchResult",
    "ChangePage",
    "CheckResult",
    "Connector",
    "HistoryItem",
    "RecordType",
    "SentEmail",
    "derived_identity",
]


def derived_identity(crm: CrmKind, record_id: str) -> tuple[str, str]:
    """``(local id, UID)`` for a CRM record that has no crm-meetings UID of its own."""
    return f"{crm.value}-{record_id}", f"{crm.value}-{record_id}@crm-meetings"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one record inside a batch call (CRMs report per record)."""

    key: str  # the caller's key: our meeting id, or a provider session id
    ok: bool
    record_id: str | None = None
    error: CrmMeetingsError | None = None


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of an incremental read: changed meetings, deleted record ids, next cursor.

    ``cursor`` is opaque to callers: store it only after the page was processed, and pass
    it back to resume. ``None`` means the read is complete up to now.
    """

    meetings: tuple[Meeting, ...]
    deleted: tuple[str, ...]
    cursor: str | None
    full_scan: bool = False  # the cursor was too old for the CRM's window: a full re-read


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """What really happened in one CRM meeting: its sessions with their participants."""

    meeting: Meeting  # must carry crm_record_id
    sessions: tuple[Session, ...]


@dataclass(frozen=True, slots=True)
class SentEmail:
    """An e-mail crm-meetings delivered, to be logged as an e-mail activity on the meeting's
    CRM records (its related records and the invitees the CRM knows).

    ``key`` is stable for the message (derived from its Message-ID): the CRM keeps it with
    the activity, so a replay is recognised instead of logged twice. ``maybe_logged`` says
    an earlier attempt may have written it (a crash, a lost answer): connectors that cannot
    refuse a duplicate key look before they write.
    """

    key: str
    message_id: str
    meeting: Meeting  # where it is logged: related records, invitees' CRM relations
    sender: Person
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str
    sent_at: datetime
    maybe_logged: bool = False


@dataclass(frozen=True, slots=True)
class RecordType:
    """A meeting record type / layout the CRM has, so admins can hide some."""

    id: str
    name: str
    active: bool = True
    default: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of ``crm-meetings doctor``: what was checked, and how to fix a failure."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """API budget as the CRM reports it (Sforce-Limit-Info, HubSpot/Zoho headers)."""

    used: int | None = None
    limit: int | None = None
    observed_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def remaining(self) -> int | None:
        if self.used is None or self.limit is None:
            return None
        return max(0, self.limit - self.used)


@runtime_checkable
class Connector(Protocol):
    """One CRM's meetings, through the SDK its developers know."""

    crm: CrmKind
    calls: CallCounter
    batch_limit: int  # records per batch write call

    def get(self, record_id: str) -> Meeting:
        """The meeting record ``record_id``; NotFoundError when it does not exist."""
        ...

    def find_by_uid(self, uid: str) -> Meeting | None:
        """The live record crm-meetings created with this iCalendar UID, or ``None`` (none
        was made, or it was deleted). Read with the CRM's immediately consistent lookup, so
        a retry finds the record an interrupted create made a moment ago."""
        ...

    def create(self, meeting: Meeting) -> Meeting:
        """Create the record with invitees and related records; returns it with
        ``crm_record_id`` and ``crm_modified_at`` set."""
        ...

    def create_many(self, meetings: Sequence[Meeting]) -> list[BatchResult]:
        """Create in as few calls as the CRM allows; one result per meeting, in order."""
        ...

    def update(self, meeting: Meeting, change: MeetingChange) -> Meeting:
        """Write the fields ``change`` names (and invitee additions/removals)."""
        ...

    def delete(self, record_id: str) -> None:
        """Delete the record; deleting a record that is already gone is not an error."""
        ...

    def list_for_record(self, ref: RecordRef) -> Iterator[Meeting]:
        """Meetings related to a CRM record (Account, Contact, Deal…), all pages."""
        ...

    def changed_since(self, cursor: str | None) -> Iterator[ChangePage]:
        """Incremental read, deletions included; ``None`` starts with a full scan."""
        ...

    def write_history_many(self, items: Sequence[HistoryItem]) -> list[BatchResult]:
        """Upsert sessions and participants keyed by provider session id: a replay
        writes nothing twice. One result per session, keyed by its session id."""
        ...

    def log_emails(self, emails: Sequence[SentEmail]) -> list[BatchResult]:
        """Log sent e-mails as the CRM's e-mail activity on the meetings' records, in as few
        calls as the CRM allows; one result per e-mail, keyed by ``SentEmail.key``, in
        order. Logging an e-mail already logged (same key) writes nothing and is ``ok``.
        Never sends mail."""
        ...

    def record_types(self) -> list[RecordType]:
        """The meeting record types / layouts the CRM has."""
        ...

    def budget(self) -> Budget:
        """The API budget as last reported by the CRM."""
        ...

    def check(self) -> list[CheckResult]:
        """Credentials, required objects and fields, API budget: for ``doctor``."""
        ...

    def close(self) -> None:
        """Release pooled HTTP connections."""
        ...
