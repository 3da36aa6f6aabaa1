"""The one protocol every conferencing provider implements, and the values it trades in.

A provider creates, updates, cancels and deletes the provider side of a meeting (for the
actions layer) and tells the history sync which meetings ran and what their sessions were.
Whatever a vendor's shape of "this meeting never started" (Zoom: an empty instance list;
GoTo: a 404 for its attendees), :meth:`ConferencingProvider.sessions` raises
:class:`~crm_meetings.errors.NoSessionExistsError`.

``CheckResult`` is the connectors' doctor line, reused as is (imported from
``connectors.base`` rather than duplicated).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from crm_meetings.connectors.base import CheckResult
from crm_meetings.model import Meeting, Session
from crm_meetings.transport import CallCounter

__all__ = ["CheckResult", "ConferencingProvider", "Instance", "ProviderMeeting", "RanMeeting"]


@dataclass(frozen=True, slots=True)
class ProviderMeeting:
    """The provider's meeting behind a CRM meeting: what invitations show."""

    provider: str
    id: str  # store it as Meeting.provider_meeting_id
    join_url: str
    dial_in: tuple[str, ...] = ()  # human-readable numbers / access codes
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    """One session of a meeting as a listing shows it, before its participants are read."""

    id: str  # the provider session id (Zoom: the instance UUID)
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class RanMeeting:
    """A meeting that ran at least once in the window asked about."""

    provider: str
    id: str
    topic: str
    first_start: datetime  # the earliest session start seen in the window (UTC)
    join_url: str | None = None  # when the listing carries it (neither Zoom's nor GoTo's does)
    # every session the listing showed in the window, oldest first, when it shows them
    # with their start and end (Zoom's report does; GoTo's history does not: empty)
    instances: tuple[Instance, ...] = ()


@runtime_checkable
class ConferencingProvider(Protocol):
    """Zoom, GoTo Meeting, …: where meetings are held and where sessions come from."""

    name: str
    calls: CallCounter

    def create_meeting(self, meeting: Meeting) -> ProviderMeeting:
        """Create the provider meeting for ``meeting`` (its organizer hosts it)."""
        ...

    def find_created(self, meeting: Meeting) -> list[ProviderMeeting]:
        """The organizer's provider meetings that ``create_meeting(meeting)`` may have made:
        the same subject, start and end. Providers take no idempotency key, so a create
        whose answer was lost (a timeout, a dropped connection, a crash) is looked for
        here before it is sent again; the caller rules out meetings it already uses."""
        ...

    def update_meeting(self, provider_meeting_id: str, meeting: Meeting) -> None:
        """Write the subject, times, zone and description of ``meeting``."""
        ...

    def cancel_meeting(self, provider_meeting_id: str) -> None:
        """Cancel: the join link stops working; the vendor notifies where it can.
        Cancelling a meeting that is already gone is not an error."""
        ...

    def delete_meeting(self, provider_meeting_id: str) -> None:
        """Delete without notices; deleting a meeting that is already gone is not an error."""
        ...

    def meetings_ran(
        self, organizer_email: str, since: datetime, until: datetime
    ) -> Iterator[RanMeeting]:
        """Each meeting hosted by ``organizer_email`` with a session that started in
        ``[since, until)``, once, in order of its first such session."""
        ...

    def sessions(
        self, provider_meeting_id: str, *, listed: RanMeeting | None = None
    ) -> list[Session]:
        """Every session of the meeting with its participants, oldest first.

        ``listed``: the meeting as :meth:`meetings_ran` listed it; when it carries
        ``instances``, the answer is those sessions (the ones in that window), and only
        what the listing lacks (participants) is read.
        NoSessionExistsError when it never started; NotFoundError when it does not exist.
        """
        ...

    def check(self) -> list[CheckResult]:
        """Credentials and API access, for ``crm-meetings doctor``."""
        ...

    def close(self) -> None:
        """Release the HTTP connections."""
        ...
