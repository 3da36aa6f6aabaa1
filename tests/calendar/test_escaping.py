"""Hostile input: nothing a user types can add a property, a header or markup."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import compat32, default
from html import escape
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_meetings.calendar import ics, imip
from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.invitation import invitation, render_text
from crm_meetings.model import Invitee, Meeting, Person

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SENDER = Sender("meetings@acme.example", "Acme Meetings")


def header(raw: bytes, name: str) -> str:
    """A header as RFC 2047 readers decode it.

    Not with ``policy.default``: its parser puts a space between adjacent encoded-words
    of a display name, which RFC 2047 §6.2 says to ignore.
    """
    value = message_from_bytes(raw, policy=compat32)[name]
    return str(make_header(decode_header(value)))


INJECTION = "x\r\nX-INJECTED:1\r\nEND:VEVENT\r\nBEGIN:VALARM\r\nATTENDEE:mailto:eve@evil.example"
# CN parameters cannot carry these three as written (see ics._parameter_text).
LOOKALIKES = str.maketrans({'"': "'", "^": "\u02c6", "\\": "\u29f5"})
HOSTILE_NAME = 'Eve "the; admin", <script>alert(1)</script>: Ünïcödé ' + "long" * 45


def hostile(build_meeting: Callable[..., Meeting]) -> Meeting:
    return build_meeting(
        subject='Q1; budget, "plans" <script>alert(1)</script> — Ünïcödé 会议 ' + "x" * 150,
        description=INJECTION + "\nsemi;colon, comma\\backslash\n<b>bold</b>",
        location="Room; 4, <b>floor</b> \\ é",
        organizer=Person("olga@acme.example", HOSTILE_NAME[:200]),
        invitees=(Invitee("eve@client.example", HOSTILE_NAME[:255]),),
    )


def test_hostile_text_stays_inside_its_property(
    build_meeting: Callable[..., Meeting], ical: SimpleNamespace
) -> None:
    meeting = hostile(build_meeting)
    data = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    parsed = ical.parse(data)
    ical.check_event(parsed, meeting, NOW)
    names = [line.split(b":")[0].split(b";")[0] for line in data.split(b"\r\n") if line]
    assert b"X-INJECTED" not in names
    # VCALENDAR, VTIMEZONE, its DAYLIGHT and STANDARD, VEVENT: nothing more
    assert names.count(b"BEGIN") == names.count(b"END") == 5
    assert not parsed.calendar.walk("VALARM")
    assert set(parsed.attendees()) == {"eve@client.example"}
    assert set(parsed.second_attendees()) == {"eve@client.example"}
    description = str(parsed.event["DESCRIPTION"])
    assert description.startswith(INJECTION.replace("\r\n", "\n"))
    assert parsed.second.vevent.description.value == description
    assert str(parsed.event["LOCATION"]) == meeting.location == parsed.second.vevent.location.value
    cn = parsed.attendees()["eve@client.example"]["CN"]
    assert cn == HOSTILE_NAME[:255].translate(LOOKALIKES).strip()
    assert parsed.second_attendees()["eve@client.example"]["CN"] == cn


def test_hostile_text_cannot_add_headers_or_markup(build_meeting: Callable[..., Meeting]) -> None:
    meeting = hostile(build_meeting)
    (mail,) = imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=NOW)
    message = message_from_bytes(mail.raw, policy=default)
    assert isinstance(message, EmailMessage)
    assert message["Bcc"] is None
    assert message["X-Injected"] is None
    for name in ("From", "To", "Subject", "Message-ID", "Date"):
        assert len(message.get_all(name) or []) == 1
    assert header(mail.raw, "Subject") == f"Invitation: {meeting.subject}"
    assert header(mail.raw, "To") == f"{meeting.invitees[0].name} <eve@client.example>"
    (to,) = message["To"].addresses
    assert to.addr_spec == "eve@client.example"
    html_part = message.get_body(("html",))
    assert html_part is not None
    page = html_part.get_content()
    assert "<script>" not in page
    assert "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    text_part = message.get_body(("plain",))
    assert text_part is not None
    assert "<script>alert(1)</script>" in text_part.get_content()  # plain text is not markup


SINGLE_LINE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=80
).filter(lambda s: s.strip() == s and bool(s))
MULTI_LINE = st.lists(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40),
    max_size=4,
).map("\n".join)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=SINGLE_LINE, description=MULTI_LINE, name=SINGLE_LINE)
def test_any_text_round_trips_through_the_ics(
    subject: str, description: str, name: str, meeting: Meeting, ical: SimpleNamespace
) -> None:
    invitee = Invitee("ann@client.example", name)
    shown = name.translate(LOOKALIKES)
    revised, _ = meeting.revise(
        subject=subject, description=description, join_url=None, invitees=(invitee,)
    )
    parsed = ical.parse(ics.request(revised, recipients=revised.invitees, now=NOW))
    assert str(parsed.event["SUMMARY"]) == subject == parsed.second.vevent.summary.value
    if description:
        assert str(parsed.event["DESCRIPTION"]) == description
        assert parsed.second.vevent.description.value == description
    else:
        assert "DESCRIPTION" not in parsed.event
    assert parsed.attendees()["ann@client.example"]["CN"] == shown
    assert parsed.second_attendees()["ann@client.example"]["CN"] == shown


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=SINGLE_LINE, name=SINGLE_LINE)
def test_any_subject_and_name_round_trip_through_the_headers(
    subject: str, name: str, meeting: Meeting
) -> None:
    revised, _ = meeting.revise(subject=subject, invitees=(Invitee("ann@client.example", name),))
    (mail,) = imip.compose(revised, ics.plan_new(revised), sender=SENDER, now=NOW)
    assert header(mail.raw, "Subject") == "Invitation: " + " ".join(revised.subject.split())
    name = revised.invitees[0].name
    shown = header(mail.raw, "To")
    if name.isascii():  # an ASCII phrase is atoms: runs of spaces fold to one
        assert message_from_bytes(mail.raw, policy=default)["To"].addresses[0].display_name == (
            " ".join(name.split())
        )
    else:
        assert shown == f"{name} <ann@client.example>"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=SINGLE_LINE, description=MULTI_LINE)
def test_any_text_round_trips_through_the_mime_bodies(
    subject: str, description: str, meeting: Meeting
) -> None:
    """The entity is written by hand: whatever the text, a reader gets it back from the
    plain and HTML parts, both calendar parts are the calendar, encoded lines keep to
    RFC 2045's 76 characters, and no body line can pass for a boundary."""
    revised, _ = meeting.revise(subject=subject, description=description)
    mail = imip.compose(revised, ics.plan_new(revised), sender=SENDER, now=NOW)[0]
    message = message_from_bytes(mail.raw, policy=default)
    assert isinstance(message, EmailMessage)
    plain, page = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert page is not None
    shown = plain.get_content().splitlines()
    assert shown[2:] == render_text(invitation(revised)).splitlines()
    for line in revised.description.splitlines():
        assert escape(line, quote=True) in page.get_content()
    calendar = ics.request(revised, recipients=revised.invitees, now=NOW)
    found = [p for p in message.walk() if p.get_content_maintype() != "multipart"][2:]
    assert [p.get_payload(decode=True) for p in found] == [calendar, calendar]
    head, _, body = mail.raw.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    boundaries = [line for line in body.split(b"\r\n") if line.startswith(b"--")]
    assert len(boundaries) == 7  # mixed: 2 parts and its end; alternative: 3 and its end
