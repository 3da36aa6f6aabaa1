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

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    "ContactMemo",
    "HistoryItem",
    "HistoryRun",
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
    """What really happened in one CRM meeting: its sessions with their participants.

    ``sessions`` are the ones to write; ``earlier`` are the meeting's sessions the CRM
    already holds from earlier runs (not written again), for a CRM that keeps a summary of
    all of them on the meeting (HubSpot's session count and actual start/end).
    """

    meeting: Meeting  # must carry crm_record_id
    sessions: tuple[Session, ...]
    earlier: tuple[Session, ...] = ()

    def all_sessions(self) -> tuple[Session, ...]:
        """Every session of the meeting known so far, each once (a rewritten one as new)."""
        fresh = {s.provider_session_id for s in self.sessions}
        return (*(s for s in self.earlier if s.provider_session_id not in fresh), *self.sessions)


class ContactMemo:
    """Participant e-mail → the CRM's contact id (``None``: no such contact), so that a
    sync looks each address up once; past ``limit`` addresses the least recently used is
    forgotten (and read again if it comes back), so memory stays bounded."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, str | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def unknown(self, emails: Iterable[str]) -> list[str]:
        """The addresses (lower-cased, each once, in order) not looked up yet."""
        wanted = dict.fromkeys(e.lower() for e in emails)
        return [e for e in wanted if e not in self._ids]

    def learn(self, looked_up: Iterable[str], found: Mapping[str, str]) -> None:
        """Remember the result of a lookup of ``looked_up``: ``found`` maps those that are
        contacts to their ids; the others are remembered as not being contacts."""
        for email in looked_up:
            key = email.lower()
            self._ids[key] = found.get(key)
            self._ids.move_to_end(key)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def ids(self, emails: Iterable[str]) -> dict[str, str]:
        """E-mail (lower-cased) → contact id, for the given addresses that are contacts."""
        out: dict[str, str] = {}
        for email in emails:
            key = email.lower()
            contact = self._ids.get(key)
            if contact is not None:
                self._ids.move_to_end(key)
                out[key] = contact
        return out


@dataclass(slots=True)
class HistoryRun:
    """What one sync run shares between its ``write_history_many`` calls.

    ``checked``: the caller already compared each session with what it last wrote (the
    sync engine's store), so a connector needs no read of the CRM to skip unchanged
    sessions; its upsert by session id still makes a replay (a crash after the CRM
    accepted, before the store committed) update rather than duplicate.
    ``contacts``: participants' contact ids as looked up so far in this run (dropped with
    the run, so a contact created tomorrow is found tomorrow).
    """

    checked: bool = False
    contacts: ContactMemo = field(default_factory=ContactMemo)


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

    def write_history_many(
        self, items: Sequence[HistoryItem], *, run: HistoryRun | None = None
    ) -> list[BatchResult]:
        """Upsert sessions and participants keyed by provider session id: a replay
        writes nothing twice. One result per session, keyed by its session id.

        ``run`` (the sync engine passes one per run) shares lookups between the run's
        calls and says whether the sessions were already checked against the last write.
        """
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
