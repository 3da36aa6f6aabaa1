"""Plain-text notices (confirmation codes, approval requests, refusals) for the outbox.

The outbox was built for iMIP: its rows carry a meeting UID, a METHOD and a SEQUENCE. A
notice has none, so :func:`notice` fills them in a recognisable way: ``meeting_uid`` is
the notice's ``topic`` (e.g. ``sender-confirmation:<address id>``), ``sequence`` 0 and
``method`` REQUEST (the only one that means "new message"). The idempotency key comes
from (topic, recipient, nonce): the same notice queued twice is sent once, and a resend
passes a new nonce.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from crm_meetings.calendar.ics import Method
from crm_meetings.calendar.imip import OutgoingMail, Sender, _text_header
from crm_meetings.model import Person, normalize_email, utc

__all__ = ["notice"]


def notice(
    *,
    sender: Sender,
    recipient: str,
    subject: str,
    body: str,
    topic: str,
    nonce: str,
    now: datetime,
    in_reply_to: str | None = None,
    cc: Sequence[str] = (),
) -> OutgoingMail:
    """One plain-text e-mail to ``recipient``, ready for :meth:`Outbox.enqueue`; ``cc`` is
    only shown (queue the same notice to each of them to deliver it)."""
    to = Person(recipient)  # validates the address
    title = Person(sender.address, " ".join(subject.split())[:200]).name  # one safe line
    material = "\n".join(("notice", topic, to.email, nonce))
    key = hashlib.sha256(material.encode("utf-8")).hexdigest()
    mid = f"<notice.{key[:40]}@{sender.domain}>"
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(display_name=sender.name, addr_spec=sender.address)
    message["To"] = Address(addr_spec=to.email)
    if cc:
        message["Cc"] = [Address(addr_spec=Person(a).email) for a in cc]
    if sender.reply_to:
        message["Reply-To"] = Address(addr_spec=sender.reply_to)
    message["Subject"] = _text_header("Subject", title)  # a typed encoded-word stays text
    message["Date"] = format_datetime(utc(now, "now"))
    message["Message-ID"] = mid
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return OutgoingMail(
        meeting_uid=topic[:255],
        sequence=0,
        method=Method.REQUEST,
        recipient=normalize_email(to.email),
        sender=sender.address,
        subject=title,
        message_id=mid,
        idempotency_key=key,
        raw=message.as_bytes(),
    )
