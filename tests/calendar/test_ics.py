"""iTIP REQUEST / CANCEL and the import file, checked on both parsers' output."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from icalendar import Calendar

from crm_meetings.calendar import ics
from crm_meetings.calendar.ics import Delivery, Method, Notice
from crm_meetings.calendar.vtimezone import vtimezone
from crm_meetings.errors import ValidationError
from crm_meetings.model import Invitee, Meeting, MeetingStatus

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)
MeetingFactory = Callable[..., Meeting]


def emails(delivery: Delivery) -> list[str]:
    return [i.email for i in delivery.recipients]


@pytest.fixture
def built(ical: SimpleNamespace) -> Callable[..., Any]:
    """Build the calendar of ``delivery``, check it and return both parsers' view."""

    def build_and_check(meeting: Meeting, delivery: Delivery, now: datetime = NOW) -> Any:
        build = ics.cancel if delivery.method is Method.CANCEL else ics.request
        parsed = ical.parse(build(meeting, recipients=delivery.recipients, now=now))
        ical.check_event(parsed, meeting, now)
        assert parsed.method == delivery.method.value == parsed.second.method.value
        return parsed

    return build_and_check


def test_new_meeting_is_a_request_to_every_invitee(
    meeting: Meeting, built: Callable[..., Any]
) -> None:
    (delivery,) = ics.plan_new(meeting)
    assert delivery.notice is Notice.INVITATION
    assert emails(delivery) == ["ann@client.example", "bob@partner.example"]

    parsed = built(meeting, delivery)

    assert parsed.sequence == 0
    assert str(parsed.event["STATUS"]) == "CONFIRMED"
    ann = parsed.attendees()["ann@client.example"]
    assert ann == {
        "CN": "Ann Client",
        "CUTYPE": "INDIVIDUAL",
        "ROLE": "REQ-PARTICIPANT",
        "PARTSTAT": "NEEDS-ACTION",
        "RSVP": "TRUE",
    }
    assert parsed.attendees()["bob@partner.example"]["ROLE"] == "OPT-PARTICIPANT"
    assert parsed.second_attendees() == parsed.attendees()
    assert parsed.event["ORGANIZER"].params["CN"] == "Olga Organizer"
    assert str(parsed.event["URL"]) == meeting.join_url
    assert str(parsed.event["LOCATION"]) == "Room 4"
    description = str(parsed.event["DESCRIPTION"])
    assert description == f"{meeting.description}\n\nJoin: {meeting.join_url}"
    assert parsed.second.vevent.description.value == description


def test_request_times_carry_the_organizers_zone(meeting: Meeting, ical: SimpleNamespace) -> None:
    data = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    assert b"DTSTART;TZID=Europe/Paris:20260310T090000\r\n" in data
    assert b"DTEND;TZID=Europe/Paris:20260310T100000\r\n" in data
    (zone,) = ical.parse(data).calendar.walk("VTIMEZONE")
    assert str(zone["TZID"]) == "Europe/Paris"


def test_the_kept_vtimezone_is_written_as_icalendar_writes_the_whole_calendar(
    meeting: Meeting,
) -> None:
    """The VTIMEZONE's bytes are kept per (zone, year) and put in front of the VEVENT:
    the result is what icalendar writes for the calendar with the component in it."""
    data = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    parsed = Calendar.from_ical(data)
    assert [c.name for c in parsed.subcomponents] == ["VTIMEZONE", "VEVENT"]
    whole = Calendar()
    for name, value in parsed.property_items(recursive=False)[1:-1]:
        whole.add(name, value)
    zone = vtimezone(meeting.timezone, meeting.start)
    assert zone is not None
    whole.add_component(zone)
    whole.add_component(parsed.subcomponents[1])
    assert whole.to_ical() == data
    year = timedelta(days=365)
    later, _ = meeting.revise(start=meeting.start + year, end=meeting.end + year)
    written = Calendar.from_ical(ics.request(later, recipients=later.invitees, now=NOW))
    (later_zone,) = written.walk("VTIMEZONE")  # kept per year: its first onsets move on
    expected = vtimezone(later.timezone, later.start)
    assert expected is not None
    assert later_zone.to_ical() == expected.to_ical() != zone.to_ical()


def test_utc_organizer_gets_utc_times_and_no_vtimezone(
    build_meeting: MeetingFactory, ical: SimpleNamespace
) -> None:
    meeting = build_meeting(timezone="UTC")
    data = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    assert b"DTSTART:20260310T080000Z\r\n" in data
    assert b"VTIMEZONE" not in data
    ical.check_event(ical.parse(data), meeting, NOW)


def test_irregular_zone_falls_back_to_utc_times(build_meeting: MeetingFactory) -> None:
    meeting = build_meeting(timezone="Africa/Casablanca")  # DST moves with Ramadan
    data = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    assert b"VTIMEZONE" not in data
    assert b"DTSTART:20260310T080000Z\r\n" in data


def test_time_change_is_an_update_with_a_higher_sequence(
    meeting: Meeting, built: Callable[..., Any]
) -> None:
    moved, change = meeting.revise(
        start=meeting.start + timedelta(days=1), end=meeting.end + timedelta(days=1)
    )
    (delivery,) = ics.plan_edit(meeting, moved, change)

    assert delivery.notice is Notice.UPDATE
    assert emails(delivery) == ["ann@client.example", "bob@partner.example"]
    parsed = built(moved, delivery, LATER)
    assert parsed.sequence == 1
    assert parsed.event.decoded("DTSTART") == datetime(2026, 3, 11, 8, tzinfo=UTC)


def test_added_invitee_gets_an_invitation_and_the_others_an_update(
    meeting: Meeting, built: Callable[..., Any]
) -> None:
    carol = Invitee("carol@new.example", "Carol New")
    grown, change = meeting.revise(invitees=(*meeting.invitees, carol))

    update, invitation = ics.plan_edit(meeting, grown, change)

    assert (update.notice, emails(update)) == (
        Notice.UPDATE,
        ["ann@client.example", "bob@partner.example"],
    )
    assert (invitation.notice, emails(invitation)) == (Notice.INVITATION, ["carol@new.example"])
    parsed = built(grown, invitation)
    assert set(parsed.attendees()) == {
        "ann@client.example",
        "bob@partner.example",
        "carol@new.example",
    }
    assert parsed.sequence == 1


def test_removed_invitee_gets_a_cancel_without_status(
    meeting: Meeting, built: Callable[..., Any]
) -> None:
    ann, _ = meeting.invitees
    shrunk, change = meeting.revise(invitees=(ann,))

    update, removal = ics.plan_edit(meeting, shrunk, change)

    assert (update.notice, emails(update)) == (Notice.UPDATE, ["ann@client.example"])
    assert (removal.notice, emails(removal)) == (Notice.CANCELLATION, ["bob@partner.example"])
    request = built(shrunk, update)
    assert set(request.attendees()) == {"ann@client.example"}
    cancel = built(shrunk, removal)
    assert set(cancel.attendees()) == {"bob@partner.example"}
    assert "STATUS" not in cancel.event  # RFC 5546 §3.2.5: only some attendees uninvited
    assert cancel.sequence == request.sequence == 1


@pytest.mark.parametrize("status", [MeetingStatus.CANCELLED, MeetingStatus.DELETED])
def test_cancel_and_delete_send_a_cancel_to_everyone(
    meeting: Meeting, status: MeetingStatus, built: Callable[..., Any]
) -> None:
    gone, change = meeting.revise(status=status)

    (delivery,) = ics.plan_edit(meeting, gone, change)

    assert delivery.notice is Notice.CANCELLATION
    assert emails(delivery) == ["ann@client.example", "bob@partner.example"]
    parsed = built(gone, delivery, LATER)
    assert str(parsed.event["STATUS"]) == "CANCELLED"
    assert parsed.second.vevent.status.value == "CANCELLED"
    assert parsed.sequence == meeting.sequence + 1
    assert set(parsed.attendees()) == {"ann@client.example", "bob@partner.example"}
    assert "RSVP" not in parsed.attendees()["ann@client.example"]
    assert not list(parsed.calendar.walk("VALARM"))


def test_sequence_rises_over_a_life_cycle(meeting: Meeting, built: Callable[..., Any]) -> None:
    carol = Invitee("carol@new.example", "Carol")
    steps: list[dict[str, object]] = [
        {"start": meeting.start + timedelta(hours=1), "end": meeting.end + timedelta(hours=1)},
        {"invitees": (*meeting.invitees, carol)},
        {"invitees": (meeting.invitees[0], carol)},
        {"subject": "Quarterly review (moved room)"},
        {"status": MeetingStatus.CANCELLED},
        {"status": MeetingStatus.DELETED},
    ]
    seen: list[tuple[int, str]] = []
    current = meeting
    (first,) = ics.plan_new(meeting)
    seen.append((built(meeting, first).sequence, first.method.value))
    for step in steps:
        revised, change = current.revise(**step)
        for delivery in ics.plan_edit(current, revised, change):
            parsed = built(revised, delivery)
            assert str(parsed.event["UID"]) == meeting.uid
            seen.append((parsed.sequence, delivery.method.value))
        current = revised

    sequences = sorted({sequence for sequence, _ in seen})
    assert sequences == [0, 1, 2, 3, 4, 5]
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert seen[-1] == (5, "CANCEL")
    assert current.sequence == 6  # deleting a cancelled meeting sends nothing more


def test_unannounced_change_sends_nothing(meeting: Meeting) -> None:
    revised, change = meeting.revise(notes="private notes")
    assert ics.plan_edit(meeting, revised, change) == ()
    assert revised.sequence == meeting.sequence


def test_reinstated_meeting_invites_everyone_again(
    meeting: Meeting, built: Callable[..., Any]
) -> None:
    cancelled, _ = meeting.revise(status=MeetingStatus.CANCELLED)
    back, change = cancelled.revise(status=MeetingStatus.SCHEDULED)
    (delivery,) = ics.plan_edit(cancelled, back, change)
    assert delivery.notice is Notice.INVITATION
    assert built(back, delivery).sequence == 2


def test_add_to_calendar_is_an_importable_event_without_method(
    meeting: Meeting, ical: SimpleNamespace
) -> None:
    parsed = ical.parse(ics.add_to_calendar(meeting, NOW))
    ical.check_event(parsed, meeting, NOW)
    assert parsed.method is None
    assert "PUBLISH" not in parsed.calendar.to_ical().decode()
    assert str(parsed.event["STATUS"]) == "CONFIRMED"
    assert parsed.calendar.walk("VTIMEZONE")


def test_output_is_deterministic(meeting: Meeting) -> None:
    first = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    assert ics.request(meeting, recipients=meeting.invitees, now=NOW) == first
    assert first.count(b"UID:") == 1


def test_cancel_refuses_a_meeting_whose_sequence_was_not_bumped(meeting: Meeting) -> None:
    with pytest.raises(ValidationError, match="SEQUENCE"):
        ics.cancel(meeting, recipients=meeting.invitees, now=NOW)


def test_cancel_refuses_invitees_still_invited(meeting: Meeting) -> None:
    moved, _ = meeting.revise(subject="Moved")
    with pytest.raises(ValidationError, match="still invited"):
        ics.cancel(moved, recipients=moved.invitees[:1], now=NOW)


def test_request_refuses_strangers_and_cancelled_meetings(meeting: Meeting) -> None:
    with pytest.raises(ValidationError, match="not invited"):
        ics.request(meeting, recipients=(Invitee("eve@x.example"),), now=NOW)
    cancelled, _ = meeting.revise(status=MeetingStatus.CANCELLED)
    with pytest.raises(ValidationError, match="cannot be requested"):
        ics.request(cancelled, recipients=cancelled.invitees, now=NOW)


def test_naive_clock_is_refused(meeting: Meeting) -> None:
    with pytest.raises(ValidationError, match="no timezone"):
        ics.request(meeting, recipients=meeting.invitees, now=datetime(2026, 3, 1, 8))
