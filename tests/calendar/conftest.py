"""Calendar test fixtures: a fixed clock, a meeting with two invitees, and ``ical``.

``ical`` checks every calendar we emit and reads it back with icalendar and vobject
(helpers are fixtures because the suite runs in importlib mode, which has no test imports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import vobject
from icalendar import Calendar, Event

from crm_meetings.model import Invitee, Meeting, Person, new_meeting

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

MeetingFactory = Callable[..., Meeting]


@dataclass(frozen=True)
class Parsed:
    """One calendar as both parsers see it."""

    calendar: Calendar
    event: Event
    second: Any  # vobject's VCALENDAR

    @property
    def method(self) -> str | None:
        value = self.calendar.get("METHOD")
        return None if value is None else str(value)

    @property
    def sequence(self) -> int:
        return int(self.event["SEQUENCE"])

    def attendees(self) -> dict[str, dict[str, str]]:
        """ATTENDEE parameters by bare address, as icalendar reads them."""
        found = self.event.get("ATTENDEE", [])
        values = found if isinstance(found, list) else [found]
        return {str(a).removeprefix("mailto:"): dict(a.params) for a in values}

    def second_attendees(self) -> dict[str, dict[str, str]]:
        """ATTENDEE parameters by bare address, as vobject reads them."""
        lines = self.second.vevent.contents.get("attendee", [])
        return {
            line.value.removeprefix("mailto:"): {k: v[0] for k, v in line.params.items()}
            for line in lines
        }


def parse(data: bytes) -> Parsed:
    """Parse with both libraries after checking the wire format."""
    check_wire_format(data)
    calendar = Calendar.from_ical(data)
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 1
    second = vobject.readOne(data.decode("utf-8"))
    return Parsed(calendar, events[0], second)


def check_wire_format(data: bytes) -> None:
    """CRLF endings only, and no line longer than 75 octets (RFC 5545 §3.1)."""
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    for line in data.split(b"\r\n"):
        assert len(line) <= 75, line
    data.decode("utf-8")


def check_event(parsed: Parsed, meeting: Meeting, now: datetime) -> None:
    """What every REQUEST, CANCEL and import file says about ``meeting``, twice."""
    event, second = parsed.event, parsed.second.vevent
    assert str(event["UID"]) == meeting.uid == second.uid.value
    assert parsed.sequence == meeting.sequence == int(second.sequence.value)
    stamp = event.decoded("DTSTAMP")
    assert stamp == now
    assert stamp.utcoffset() == timedelta(0)
    assert event["DTSTAMP"].to_ical().endswith(b"Z")
    assert second.dtstamp.value == now
    for name, value in (("DTSTART", meeting.start), ("DTEND", meeting.end)):
        assert event.decoded(name) == value
        assert getattr(second, name.lower()).value.astimezone(UTC) == value
    assert str(event["SUMMARY"]) == meeting.subject == second.summary.value
    assert not list(event.walk("VALARM"))
    organizer = event["ORGANIZER"]
    assert str(organizer) == f"mailto:{meeting.organizer.email}"
    assert second.organizer.value == f"mailto:{meeting.organizer.email}"


@pytest.fixture
def ical() -> SimpleNamespace:
    """``ical.parse(data)``, ``ical.check_event(parsed, meeting, now)``, ``ical.wire(data)``."""
    return SimpleNamespace(parse=parse, check_event=check_event, wire=check_wire_format)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def build_meeting() -> MeetingFactory:
    """Build a meeting; keyword arguments override the defaults."""

    def build(**overrides: Any) -> Meeting:
        fields: dict[str, Any] = {
            "crm": "salesforce",
            "subject": "Quarterly review",
            "start": datetime(2026, 3, 10, 8, 0, tzinfo=UTC),
            "end": datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
            "timezone": "Europe/Paris",
            "organizer": Person("olga@acme.example", "Olga Organizer"),
            "now": NOW,
            "id_factory": lambda: "m1",
            "invitees": (
                Invitee("ann@client.example", "Ann Client"),
                Invitee("bob@partner.example", "Bob Partner", optional=True),
            ),
            "description": "Agenda: numbers, plans; next steps.",
            "location": "Room 4",
            "join_url": "https://meet.example/j/123?pwd=abc",
        }
        fields.update(overrides)
        return new_meeting(**fields)

    return build


@pytest.fixture
def meeting(build_meeting: MeetingFactory) -> Meeting:
    return build_meeting()
