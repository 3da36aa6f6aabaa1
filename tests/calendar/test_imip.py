"""iMIP e-mail: structure, headers, stable ids, and the calendar inside, parsed back."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from types import SimpleNamespace

import pytest

from crm_meetings.calendar import ics, imip
from crm_meetings.calendar.ics import Method, Notice
from crm_meetings.calendar.imip import OutgoingMail, Sender
from crm_meetings.errors import ValidationError
from crm_meetings.model import Invitee, Meeting, MeetingStatus

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SENDER = Sender("meetings@acme.example", "Acme Meetings", reply_to="olga@acme.example")


def read(mail: OutgoingMail) -> EmailMessage:
    message = message_from_bytes(mail.raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def calendar_parts(message: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    """The inline text/calendar part and the attached invite.ics."""
    inline = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    attached = [p for p in message.walk() if p.get_filename() == "invite.ics"]
    assert len(inline) == 1
    assert len(attached) == 1
    return inline[0], attached[0]  # type: ignore[return-value]


def test_invitation_has_the_rfc_6047_structure(meeting: Meeting, ical: SimpleNamespace) -> None:
    mails = imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=NOW)

    assert [m.recipient for m in mails] == ["ann@client.example", "bob@partner.example"]
    message = read(mails[0])
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    inline, attached = calendar_parts(message)
    assert attached is attachment
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_param("name") == attachment.get_filename() == "invite.ics"
    assert inline.get_param("method") == "REQUEST"
    assert str(inline.get_param("charset")).upper() == "UTF-8"
    data = inline.get_payload(decode=True)
    assert data == attached.get_payload(decode=True)
    parsed = ical.parse(data)
    ical.check_event(parsed, meeting, NOW)
    assert parsed.method == inline.get_param("method")


def test_headers_name_sender_recipient_and_subject(meeting: Meeting) -> None:
    mail = imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=NOW)[0]
    message = read(mail)
    assert message["From"] == "Acme Meetings <meetings@acme.example>"
    assert message["To"] == "Ann Client <ann@client.example>"
    assert message["Reply-To"] == "olga@acme.example"
    assert message["Subject"] == "Invitation: Quarterly review" == mail.subject
    assert message["Message-ID"] == mail.message_id
    assert message["Date"] == "Sun, 01 Mar 2026 08:00:00 +0000"
    assert message["Content-Class"] == "urn:content-classes:calendarmessage"  # Outlook's hint
    assert message["MIME-Version"] == "1.0"
    assert [part["MIME-Version"] for part in message.walk()][1:] == [None] * 5
    text = message.get_body(("plain",))
    assert text is not None
    assert "Olga Organizer invited you" in text.get_content()
    assert "Join:" in text.get_content()


@pytest.mark.parametrize(
    ("edit", "notice", "prefix", "method"),
    [
        ({"subject": "Quarterly review"}, None, None, None),
        ({"location": "Room 5"}, Notice.UPDATE, "Updated invitation", "REQUEST"),
        ({"status": MeetingStatus.CANCELLED}, Notice.CANCELLATION, "Cancelled", "CANCEL"),
        ({"status": MeetingStatus.DELETED}, Notice.CANCELLATION, "Cancelled", "CANCEL"),
    ],
)
def test_subject_and_method_follow_the_change(
    meeting: Meeting,
    edit: dict[str, object],
    notice: Notice | None,
    prefix: str | None,
    method: str | None,
) -> None:
    revised, change = meeting.revise(**edit)
    mails = imip.compose(revised, ics.plan_edit(meeting, revised, change), sender=SENDER, now=NOW)
    if notice is None:
        assert mails == []
        return
    assert {m.subject for m in mails} == {f"{prefix}: Quarterly review"}
    assert {m.method.value for m in mails} == {method}
    inline, _ = calendar_parts(read(mails[0]))
    assert inline.get_param("method") == method


def test_removed_invitee_is_told_they_were_removed(meeting: Meeting) -> None:
    shrunk, change = meeting.revise(invitees=meeting.invitees[:1])
    mails = imip.compose(shrunk, ics.plan_edit(meeting, shrunk, change), sender=SENDER, now=NOW)
    by_recipient = {m.recipient: m for m in mails}
    removed = by_recipient["bob@partner.example"]
    assert removed.method is Method.CANCEL
    assert removed.subject == "Cancelled: Quarterly review"
    body = read(removed).get_body(("plain",))
    assert body is not None
    assert "removed you from this meeting" in body.get_content()
    assert by_recipient["ann@client.example"].subject == "Updated invitation: Quarterly review"


def test_message_id_is_stable_per_uid_sequence_method_recipient(meeting: Meeting) -> None:
    first = imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=NOW)
    again = imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=NOW)
    assert [m.raw for m in again] == [m.raw for m in first]  # boundaries too
    # below the envelope, one delivery's messages are the same bytes (built once)
    bodies = {m.raw.partition(b"MIME-Version: 1.0\r\n")[2] for m in first}
    assert len(bodies) == 1
    assert len({m.message_id for m in first}) == 2
    assert len({m.idempotency_key for m in first}) == 2
    moved, change = meeting.revise(location="Room 5")
    updated = imip.compose(moved, ics.plan_edit(meeting, moved, change), sender=SENDER, now=NOW)
    assert {m.message_id for m in updated}.isdisjoint({m.message_id for m in first})
    key = imip.idempotency_key(meeting.uid, 0, Method.REQUEST, "ANN@client.example")
    assert key == first[0].idempotency_key
    assert first[0].message_id == f"<imip.{key[:40]}@acme.example>"


def test_organizer_can_be_the_sender(meeting: Meeting) -> None:
    mail = imip.compose(meeting, ics.plan_new(meeting), sender=Sender.organizer(meeting), now=NOW)
    message = read(mail[0])
    assert message["From"] == "Olga Organizer <olga@acme.example>"
    assert message["Reply-To"] is None
    assert mail[0].message_id.endswith("@acme.example>")


def test_calendar_and_method_must_match(meeting: Meeting) -> None:
    data = ics.request(meeting, recipients=meeting.invitees, now=NOW)
    with pytest.raises(ValidationError, match="METHOD:CANCEL"):
        imip.imip_message(
            meeting, Notice.CANCELLATION, meeting.invitees[0], ics=data, sender=SENDER, now=NOW
        )


@pytest.mark.parametrize(
    ("address", "name"),
    [("bad\r\nbcc: x@y.example", ""), ("ok@acme.example", "Acme\r\nBcc: eve@evil.example")],
)
def test_sender_refuses_line_breaks(address: str, name: str) -> None:
    with pytest.raises(ValidationError):
        Sender(address, name)


def test_sender_refuses_a_reply_to_with_a_name() -> None:
    with pytest.raises(ValidationError):
        Sender("ok@acme.example", reply_to="Eve <eve@evil.example>")


def test_wire_format_is_ascii_with_crlf(meeting: Meeting) -> None:
    invitee = Invitee("zoe@client.example", "Zoë Ünïcode")
    meeting = meeting.revise(invitees=(invitee,))[0]
    (mail,) = imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=NOW)
    mail.raw.decode("ascii")
    assert b"\n" not in mail.raw.replace(b"\r\n", b"")
    assert max(len(line) for line in mail.raw.split(b"\r\n")) <= 998
    assert read(mail)["To"].addresses[0].addr_spec == "zoe@client.example"
    assert b"To: =?utf-8?b?Wm/DqyDDnG7Dr2NvZGU=?= <zoe@client.example>\r\n" in mail.raw
