"""iTIP calendar objects (RFC 5546) for one meeting, built with icalendar's typed API.

``request`` invites or updates, ``cancel`` cancels the meeting or uninvites some people,
``add_to_calendar`` is a file to import. Output is deterministic: the same meeting,
recipients and ``now`` give the same bytes (CRLF endings, lines folded at 75 octets).

What the caller does for each kind of change (see :func:`plan_new`, :func:`plan_edit`):

* new meeting: ``request(meeting)`` to every invitee, SEQUENCE as created (0);
* edit: ``new, change = old.revise(...)`` bumps SEQUENCE when invitees must be told;
  send ``request(new)`` to the kept and added invitees and ``cancel(new)`` to the removed;
* cancel or delete: ``new, _ = old.revise(status=MeetingStatus.CANCELLED)`` (or
  ``DELETED``) first — that bumps SEQUENCE — then ``cancel(new)`` to every invitee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from icalendar import Calendar, Event, vCalAddress

from crm_meetings.calendar.vtimezone import vtimezone_ical
from crm_meetings.errors import ValidationError
from crm_meetings.model import Invitee, Meeting, MeetingChange, MeetingStatus, Person, utc

__all__ = [
    "PRODID",
    "Delivery",
    "Method",
    "Notice",
    "add_to_calendar",
    "cancel",
    "plan_edit",
    "plan_new",
    "request",
]

PRODID: Final = "-//crm-meetings//crm-meetings 0.1//EN"
_PARAMETER_LOOKALIKES: Final = str.maketrans({'"': "'", "^": "\u02c6", "\\": "\u29f5"})


class Method(StrEnum):
    """The iTIP methods we send (RFC 5546 §1.4)."""

    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


class Notice(StrEnum):
    """What a recipient is told; decides the method and the e-mail's subject line."""

    INVITATION = "invitation"  # first time this person hears of the meeting
    UPDATE = "update"  # a new revision of a meeting they already have
    CANCELLATION = "cancellation"  # the meeting is off, or they were uninvited

    @property
    def method(self) -> Method:
        return Method.CANCEL if self is Notice.CANCELLATION else Method.REQUEST


@dataclass(frozen=True, slots=True)
class Delivery:
    """One group of recipients that are told the same thing about a meeting."""

    notice: Notice
    recipients: tuple[Invitee, ...]

    @property
    def method(self) -> Method:
        return self.notice.method


def request(meeting: Meeting, *, recipients: Sequence[Invitee], now: datetime) -> bytes:
    """A METHOD:REQUEST for a scheduled meeting, to be sent to ``recipients``.

    The ATTENDEE list is every invitee (RFC 5546 §3.2.2: each REQUEST carries the full
    list), so ``recipients`` must be invitees of ``meeting``.
    """
    if meeting.status is not MeetingStatus.SCHEDULED:
        raise ValidationError(
            "status",
            f"a {meeting.status} meeting cannot be requested",
            hint="Send cancel() for cancelled or deleted meetings.",
        )
    invited = {i.email for i in meeting.invitees}
    strangers = [r.email for r in recipients if r.email not in invited]
    if strangers:
        raise ValidationError("recipients", f"{', '.join(strangers)} not invited to this meeting")
    return _calendar(meeting, Method.REQUEST, meeting.invitees, now, rsvp=True)


def cancel(meeting: Meeting, *, recipients: Sequence[Invitee], now: datetime) -> bytes:
    """A METHOD:CANCEL of ``meeting`` for ``recipients`` (the ATTENDEEs it lists).

    Pass the meeting *after* the change: for a cancel or delete, the value returned by
    ``revise(status=CANCELLED | DELETED)``, which carries the bumped SEQUENCE; the
    calendar then says STATUS:CANCELLED. For invitees removed from a meeting that goes
    on, pass the revised meeting and the removed invitees; STATUS is then left out, as
    RFC 5546 §3.2.5 requires when only some attendees are uninvited.
    """
    if meeting.sequence < 1:
        raise ValidationError(
            "sequence",
            "a CANCEL must carry a SEQUENCE above the invitation's",
            hint="Pass the meeting returned by Meeting.revise(...), not the one invitees have.",
        )
    if not recipients:
        raise ValidationError("recipients", "a CANCEL needs at least one recipient")
    if meeting.status is MeetingStatus.SCHEDULED:
        invited = {i.email for i in meeting.invitees}
        kept = [r.email for r in recipients if r.email in invited]
        if kept:
            raise ValidationError(
                "recipients",
                f"{', '.join(kept)} still invited; only removed invitees get a CANCEL",
            )
    return _calendar(meeting, Method.CANCEL, tuple(recipients), now, rsvp=False)


def add_to_calendar(meeting: Meeting, now: datetime) -> bytes:
    """An .ics file a person opens to put the meeting in their own calendar.

    It has no METHOD: Outlook imports a plain iCalendar object as an appointment, while
    it treats METHOD:REQUEST from its own organizer as a reply it need not act on and
    does not import METHOD:PUBLISH from mail. Same UID and SEQUENCE as the invitations,
    so a later invitation updates the imported event instead of duplicating it.
    """
    return _calendar(meeting, None, meeting.invitees, now, rsvp=False)


def plan_new(meeting: Meeting) -> tuple[Delivery, ...]:
    """Who is told what about a meeting just scheduled: an invitation to every invitee."""
    if meeting.status is not MeetingStatus.SCHEDULED or not meeting.invitees:
        return ()
    return (Delivery(Notice.INVITATION, meeting.invitees),)


def plan_edit(old: Meeting, new: Meeting, change: MeetingChange) -> tuple[Delivery, ...]:
    """Who is told what about the edit ``old`` → ``new`` (``change`` from ``revise``).

    Nothing when the change is not announced (``change.notify_invitees`` is false). A
    cancel or delete sends a CANCEL to everyone who had the meeting; a meeting already
    cancelled is not cancelled again when it is deleted. Otherwise kept invitees get an
    update, added ones an invitation and removed ones a CANCEL.
    """
    if not change.notify_invitees:
        return ()
    live = MeetingStatus.SCHEDULED
    if new.status is not live:
        if old.status is not live or not old.invitees:
            return ()
        return (Delivery(Notice.CANCELLATION, old.invitees),)
    added = set(change.added)
    removed = set(change.removed)
    if old.status is not live:  # reinstated: everyone had a CANCEL, so invite them again
        added = {i.email for i in new.invitees}
        removed = set()
    plan = (
        Delivery(Notice.UPDATE, tuple(i for i in new.invitees if i.email not in added)),
        Delivery(Notice.INVITATION, tuple(i for i in new.invitees if i.email in added)),
        Delivery(Notice.CANCELLATION, tuple(i for i in old.invitees if i.email in removed)),
    )
    return tuple(delivery for delivery in plan if delivery.recipients)


def _calendar(
    meeting: Meeting,
    method: Method | None,
    attendees: Sequence[Invitee],
    now: datetime,
    *,
    rsvp: bool,
) -> bytes:
    stamp = utc(now, "now")
    calendar = Calendar()  # not Calendar.new(): it adds a random UID to the VCALENDAR
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    if method is not None:
        calendar.add("METHOD", method.value)
    zone = vtimezone_ical(meeting.timezone, meeting.start)
    local = zone is not None
    calendar.add_component(_event(meeting, method, attendees, stamp, rsvp=rsvp, local=local))
    data: bytes = calendar.to_ical()
    if zone is None:
        return data
    # The VTIMEZONE precedes the VEVENT, where icalendar writes a component added first;
    # its written form is kept per (zone, year). No line of the calendar's own properties
    # can read BEGIN:VEVENT: values are escaped and continuation lines start with a space.
    head, begin, rest = data.partition(b"\r\nBEGIN:VEVENT\r\n")
    if not begin:  # not reached: the event was added above
        raise AssertionError("icalendar wrote no VEVENT")
    return head + b"\r\n" + zone + begin[2:] + rest


def _event(
    meeting: Meeting,
    method: Method | None,
    attendees: Sequence[Invitee],
    stamp: datetime,
    *,
    rsvp: bool,
    local: bool,
) -> Event:
    event = Event()
    event.add("UID", meeting.uid)
    event.add("SEQUENCE", meeting.sequence)
    event.add("DTSTAMP", stamp)
    event.add("DTSTART", meeting.local_start if local else meeting.start)
    event.add("DTEND", meeting.local_end if local else meeting.end)
    event.add("SUMMARY", meeting.subject)
    description = _description(meeting)
    if description:
        event.add("DESCRIPTION", description)
    if meeting.location or meeting.join_url:
        event.add("LOCATION", meeting.location or meeting.join_url or "")
    if meeting.join_url:
        event.add("URL", meeting.join_url)
    if method is Method.CANCEL and meeting.status is not MeetingStatus.SCHEDULED:
        event.add("STATUS", "CANCELLED")
    elif method is not Method.CANCEL:
        event.add("STATUS", "CONFIRMED")
    event.add("TRANSP", "OPAQUE")
    event.add("ORGANIZER", _address(meeting.organizer))
    for invitee in attendees:
        event.add("ATTENDEE", _attendee(invitee, rsvp=rsvp))
    return event


def _description(meeting: Meeting) -> str:
    """The description as written (line breaks as LF), then the join link."""
    text = meeting.description.replace("\r\n", "\n").replace("\r", "\n")
    if meeting.join_url:
        link = f"Join: {meeting.join_url}"
        text = f"{text}\n\n{link}" if text else link
    return text


def _address(person: Person | Invitee) -> vCalAddress:
    address = vCalAddress(f"mailto:{person.email}")
    if person.name:
        address.params["CN"] = _parameter_text(person.name)
    return address


def _attendee(invitee: Invitee, *, rsvp: bool) -> vCalAddress:
    address = _address(invitee)
    address.params["CUTYPE"] = "INDIVIDUAL"
    address.params["ROLE"] = "OPT-PARTICIPANT" if invitee.optional else "REQ-PARTICIPANT"
    if rsvp:
        address.params["PARTSTAT"] = "NEEDS-ACTION"
        address.params["RSVP"] = "TRUE"
    else:
        address.params["PARTSTAT"] = invitee.response.value
    return address


def _parameter_text(value: str) -> str:
    """A parameter value every client reads back as written.

    Parameter values have no escapes in RFC 5545; icalendar uses RFC 6868 carets for
    ``"`` and ``^``, which Outlook and vobject show literally, and its own parser reads
    a backslash before ``;`` as an escape. So those three become look-alikes. Names are
    single-line already (the model refuses CR and LF).
    """
    return value.translate(_PARAMETER_LOOKALIKES)
