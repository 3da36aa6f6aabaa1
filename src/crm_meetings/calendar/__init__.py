"""Calendar and mail: iTIP objects (``ics``), iMIP e-mail (``imip``), invitation text.

The pure builders are re-exported here; the outbox lives in ``calendar.outbox``.
"""

from crm_meetings.calendar.ics import (
    Delivery,
    Method,
    Notice,
    add_to_calendar,
    cancel,
    plan_edit,
    plan_new,
    request,
)
from crm_meetings.calendar.imip import OutgoingMail, Sender, compose, imip_message
from crm_meetings.calendar.invitation import invitation_text

__all__ = [
    "Delivery",
    "Method",
    "Notice",
    "OutgoingMail",
    "Sender",
    "add_to_calendar",
    "cancel",
    "compose",
    "imip_message",
    "invitation_text",
    "plan_edit",
    "plan_new",
    "request",
]
