"""iMIP e-mail (RFC 6047): one message per recipient, carrying the iTIP calendar.

Structure (RFC 6047 §2.4, as Google and Outlook send it)::

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain
    │   ├── text/html                  (every user value escaped)
    │   └── text/calendar; method=REQUEST|CANCEL; charset=UTF-8
    └── application/ics; name=invite.ics   (attachment, for clients that want a file)

Headers cannot be injected: ASCII values go through :mod:`email.headerregistry` under the
``SMTP`` policy, which refuses CR and LF; non-ASCII subjects and names are encoded whole
into RFC 2047 encoded-words by :class:`email.header.Header`, because CPython's folder
leaves the spaces next to encoded-words outside them, where every reader drops them.
The Message-ID is derived from (UID, SEQUENCE, METHOD, recipient): a resend of the same
message carries the same id, and the bytes are the same for the same input.

Everything below the envelope headers (From, To, Reply-To, Subject, Date, Message-ID,
Content-Class) is the same for every recipient of one delivery: :func:`compose` builds
that MIME entity once and puts each recipient's envelope in front of it; the envelope
headers every recipient shares are folded once too. The entity is written here rather
than by :class:`email.message.MIMEPart`, which took more time than everything else an
action does outside its CRM and provider calls: its headers are constants (no user
text), its text parts are quoted-printable with lines of at most 76 characters (RFC 2045
§6.7; the email package writes 78) and its calendar parts base64 (76-character lines).
Neither encoding can produce a line that starts with ``--=_``, so the boundaries
(``=_crm-meetings_`` and a hash of UID, SEQUENCE and METHOD) never occur in a body.
"""

from __future__ import annotations

import binascii
import hashlib
import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.policy import SMTP, Policy
from email.utils import format_datetime
from typing import Final

from crm_meetings.calendar.ics import Delivery, Method, Notice, cancel, request
from crm_meetings.calendar.invitation import Invitation, invitation, render_text
from crm_meetings.errors import ValidationError
from crm_meetings.model import Invitee, Meeting, MeetingStatus, Person, utc

__all__ = [
    "ATTACHMENT_NAME",
    "OutgoingMail",
    "Sender",
    "compose",
    "idempotency_key",
    "imip_message",
    "message_id",
    "subject_line",
]

ATTACHMENT_NAME: Final = "invite.ics"
_PREFIX: Final = {
    Notice.INVITATION: "Invitation",
    Notice.UPDATE: "Updated invitation",
    Notice.CANCELLATION: "Cancelled",
}


class _Registry(HeaderRegistry):
    """The standard header classes, each made once: CPython's registry makes a new class
    for every header it parses, a good part of the cost of building a message."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(key)
        return made


#: the ``SMTP`` policy (CR LF line ends, CR and LF refused in header values)
_POLICY: Final = SMTP.clone(header_factory=_Registry())


@dataclass(frozen=True, slots=True)
class Sender:
    """Who the mail is from: the organizer or a verified organisation address."""

    address: str
    name: str = ""
    reply_to: str | None = None

    def __post_init__(self) -> None:
        person = Person(self.address, self.name)  # validates: bare address, single-line name
        object.__setattr__(self, "address", person.email)
        object.__setattr__(self, "name", person.name)
        if self.reply_to is not None:
            object.__setattr__(self, "reply_to", Person(self.reply_to).email)

    @classmethod
    def organizer(cls, meeting: Meeting) -> Sender:
        """Send as the meeting's organizer."""
        return cls(meeting.organizer.email, meeting.organizer.name)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One e-mail to one recipient, ready for the outbox; ``raw`` is what SMTP sends."""

    meeting_uid: str
    sequence: int
    method: Method
    recipient: str
    sender: str
    subject: str
    message_id: str
    idempotency_key: str
    raw: bytes


def idempotency_key(uid: str, sequence: int, method: Method, recipient: str) -> str:
    """SHA-256 (hex) of what makes an iTIP message unique for one recipient."""
    material = "\n".join((uid, str(sequence), method.value, recipient.lower()))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def message_id(key: str, domain: str) -> str:
    """The stable Message-ID for the message with idempotency key ``key``."""
    return f"<imip.{key[:40]}@{domain}>"


def subject_line(notice: Notice, meeting: Meeting) -> str:
    """``Invitation: …``, ``Updated invitation: …`` or ``Cancelled: …``."""
    return f"{_PREFIX[notice]}: {' '.join(meeting.subject.split())}"


def compose(
    meeting: Meeting,
    deliveries: Iterable[Delivery],
    *,
    sender: Sender,
    now: datetime,
    dial_in: str | None = None,
) -> list[OutgoingMail]:
    """Every e-mail of a plan (``plan_new`` / ``plan_edit``) for ``meeting`` as it is now."""
    mails: list[OutgoingMail] = []
    for delivery in deliveries:
        build = cancel if delivery.method is Method.CANCEL else request
        ics = build(meeting, recipients=delivery.recipients, now=now)
        entity = _entity(meeting, delivery.notice, ics, dial_in)
        envelope = _Envelope.of(meeting, delivery.notice, sender, now)
        mails.extend(envelope.mail(recipient, entity) for recipient in delivery.recipients)
    return mails


def imip_message(
    meeting: Meeting,
    notice: Notice,
    recipient: Invitee,
    *,
    ics: bytes,
    sender: Sender,
    now: datetime,
    dial_in: str | None = None,
) -> OutgoingMail:
    """One iMIP message; ``ics`` is the calendar from ``request`` or ``cancel``."""
    entity = _entity(meeting, notice, ics, dial_in)
    return _Envelope.of(meeting, notice, sender, now).mail(recipient, entity)


# --- the entity below the envelope --------------------------------------------------------

_CRLF: Final = "\r\n"
#: RFC 2045 §6.7 (5): quoted-printable lines are at most 76 characters, soft break included
_QP_LINE: Final = 76
#: RFC 2045 §6.8: base64 lines are at most 76 characters, i.e. 57 bytes of data
_BASE64_CHUNK: Final = 57


def _entity(meeting: Meeting, notice: Notice, ics: bytes, dial_in: str | None) -> bytes:
    """The message below its envelope, as sent: MIME-Version, the multipart/mixed
    Content-Type, then the body parts. The same for every recipient of ``notice``."""
    method = notice.method
    if f"\r\nMETHOD:{method.value}\r\n".encode() not in ics:
        raise ValidationError("ics", f"is not a METHOD:{method.value} calendar")
    parts = invitation(meeting, dial_in=dial_in)
    heading = _heading(notice, meeting)
    material = "\n".join((meeting.uid, str(meeting.sequence), method.value))
    seed = hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]
    mixed, alternative = f"=_crm-meetings_{seed}_0", f"=_crm-meetings_{seed}_1"
    calendar = _base64(ics)
    text = (
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
    )
    html_part = ('Content-Type: text/html; charset="utf-8"', text[1])
    inline = (
        f'Content-Type: text/calendar; method="{method.value}"; charset="UTF-8"',
        "Content-Transfer-Encoding: base64",
    )
    attached = (
        f'Content-Type: application/ics; name="{ATTACHMENT_NAME}"',
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment; filename="{ATTACHMENT_NAME}"',
    )
    alternatives = _multipart(
        alternative,
        [
            (text, _quoted_printable(f"{heading}\n\n{render_text(parts)}")),
            (html_part, _quoted_printable(_html(heading, parts))),
            (inline, calendar),
        ],
    )
    entity = _multipart(
        mixed, [(_multipart_type("alternative", alternative), alternatives), (attached, calendar)]
    )
    head = ("MIME-Version: 1.0", *_multipart_type("mixed", mixed), "")
    return (_CRLF.join(head) + _CRLF + entity).encode("ascii")


def _multipart_type(subtype: str, boundary: str) -> tuple[str, str]:
    """The Content-Type of a multipart, folded before its boundary."""
    return (f"Content-Type: multipart/{subtype};", f' boundary="{boundary}"')


def _multipart(boundary: str, parts: Iterable[tuple[tuple[str, ...], str]]) -> str:
    """A multipart body (RFC 2046 §5.1.1): each part (its header lines, a blank line, its
    encoded body ending in CRLF) after a delimiter line, then the close delimiter. The
    CRLF before a delimiter belongs to the delimiter."""
    lines: list[str] = []
    for headers, encoded in parts:
        lines += [f"--{boundary}", *headers, "", encoded]
    lines.append(f"--{boundary}--")
    return _CRLF.join(lines) + _CRLF


def _quoted_printable(text: str) -> str:
    """``text`` as UTF-8 quoted-printable, lines ending in CRLF (the last one too)."""
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    return quoprimime.body_encode(data.decode("latin-1"), _QP_LINE, eol=_CRLF)


def _base64(data: bytes) -> str:
    """``data`` in base64, 76-character lines ending in CRLF (the last one too)."""
    chunks = (data[i : i + _BASE64_CHUNK] for i in range(0, len(data), _BASE64_CHUNK))
    return "".join(binascii.b2a_base64(chunk).decode("ascii")[:-1] + _CRLF for chunk in chunks)


# --- the envelope ---------------------------------------------------------------------------


def _fold(name: str, value: object) -> bytes:
    """A header as the generator writes it: parsed (CR and LF refused), folded by the
    ``SMTP`` policy."""
    return _POLICY.fold_binary(*_POLICY.header_store_parse(name, value))


_CONTENT_CLASS: Final = _fold("Content-Class", "urn:content-classes:calendarmessage")


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The envelope of one delivery: From, Reply-To, Subject and Date are folded once,
    To and Message-ID per recipient (``mail``)."""

    meeting: Meeting
    method: Method
    subject: str
    sender: Sender
    sender_header: bytes  # From
    shared: bytes  # Reply-To, Subject, Date

    @classmethod
    def of(cls, meeting: Meeting, notice: Notice, sender: Sender, now: datetime) -> _Envelope:
        subject = subject_line(notice, meeting)
        shared = [
            _fold("Subject", _text_header("Subject", subject)),
            _fold("Date", format_datetime(utc(now, "now"))),
        ]
        if sender.reply_to:
            shared.insert(0, _fold("Reply-To", Address(addr_spec=sender.reply_to)))
        return cls(
            meeting=meeting,
            method=notice.method,
            subject=subject,
            sender=sender,
            sender_header=_fold("From", _mailbox("From", sender.name, sender.address)),
            shared=b"".join(shared),
        )

    def mail(self, recipient: Invitee, entity: bytes) -> OutgoingMail:
        """``entity`` with the envelope of ``recipient`` in front of it."""
        meeting = self.meeting
        key = idempotency_key(meeting.uid, meeting.sequence, self.method, recipient.email)
        mid = message_id(key, self.sender.domain)
        raw = b"".join(
            (
                self.sender_header,
                _fold("To", _mailbox("To", recipient.name, recipient.email)),
                self.shared,
                _fold("Message-ID", mid),
                _CONTENT_CLASS,
                entity,
            )
        )
        return OutgoingMail(
            meeting_uid=meeting.uid,
            sequence=meeting.sequence,
            method=self.method,
            recipient=recipient.email,
            sender=self.sender.address,
            subject=self.subject,
            message_id=mid,
            idempotency_key=key,
            raw=raw,
        )


class _Encoded(str):
    """A header value with its wire form computed by :class:`email.header.Header`.

    The policy stores a value whose ``name`` matches the header as is, and writes it
    with its ``fold`` method; the ``str`` value is the decoded text.
    """

    name: str
    wire: str

    def __new__(cls, name: str, text: str, wire: str) -> _Encoded:
        value = super().__new__(cls, text)
        value.name = name
        value.wire = wire
        return value

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self.wire}{policy.linesep}"


def _encoded_words(name: str, text: str) -> str:
    return Header(text, "utf-8", header_name=name).encode(linesep=_POLICY.linesep)


def _plain(text: str) -> bool:
    """Whether ``text`` may go into a header as it is: ASCII, and nothing that looks like
    an encoded-word (the parser would decode one a user typed, and the folder then
    writes what it decodes to — a CR LF and a new header — raw)."""
    return text.isascii() and "=?" not in text


def _text_header(name: str, text: str) -> str:
    return text if _plain(text) else _Encoded(name, text, _encoded_words(name, text))


def _mailbox(name: str, display_name: str, address: str) -> Address | _Encoded:
    if _plain(display_name):
        return Address(display_name=display_name, addr_spec=address)
    wire = f"{_encoded_words(name, display_name)} <{address}>"
    return _Encoded(name, f"{display_name} <{address}>", wire)


def _heading(notice: Notice, meeting: Meeting) -> str:
    organizer = meeting.organizer.name or meeting.organizer.email
    if notice is Notice.INVITATION:
        return f"{organizer} invited you to a meeting."
    if notice is Notice.UPDATE:
        return f"{organizer} updated this meeting; your calendar shows the new details."
    if meeting.status is MeetingStatus.SCHEDULED:
        return f"{organizer} removed you from this meeting."
    return f"{organizer} cancelled this meeting."


def _html(heading: str, parts: Invitation) -> str:
    """The HTML body; every value goes through ``html.escape`` (quotes included)."""
    rows = "".join(
        f'<tr><th align="left" valign="top">{_escape(label)}</th><td>{_cell(label, value, parts)}'
        "</td></tr>"
        for label, value in parts.facts
    )
    description = f"<p>{_lines(parts.description)}</p>" if parts.description else ""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        f"<p>{_escape(heading)}</p><h2>{_escape(parts.title)}</h2>"
        f"<table>{rows}</table>{description}</body></html>\n"
    )


def _cell(label: str, value: str, parts: Invitation) -> str:
    if label == "Join" and parts.join_url:
        url = _escape(parts.join_url)
        return f'<a href="{url}">{url}</a>'
    return _lines(value)


def _lines(text: str) -> str:
    return "<br>".join(_escape(line) for line in text.splitlines())


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
