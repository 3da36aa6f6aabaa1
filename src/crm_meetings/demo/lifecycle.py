"""A meeting's life on one CRM: schedule, edit time, add and remove an invitee, cancel.

Each action goes through the actions layer with the real connector and a real provider;
the outbox is then delivered to the SMTP sink. :func:`life_cycle` checks what every
invitee was sent (one UID, SEQUENCE strictly increasing, a CANCEL last) and returns the
rows of the table the demo prints.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rich.table import Table

from crm_meetings.actions import (
    ActionResult,
    EditRequest,
    MeetingRequest,
    ScheduleRequest,
    ViewRequest,
    add_to_calendar,
    cancel,
    edit,
    schedule,
)
from crm_meetings.demo.system import DemoSystem
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.model import Invitee, Meeting

__all__ = ["PROVIDER_FOR", "ActionRow", "life_cycle", "table", "tomorrow_at"]

#: the conferencing provider each CRM's meeting is held on (both providers are shown)
PROVIDER_FOR = {"salesforce": "zoom", "hubspot": "goto", "zoho": "zoom"}
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One action of the life cycle, as the demo's table shows it."""

    crm: str
    action: str
    record_id: str
    sequence: int
    sent: tuple[tuple[str, str, int], ...]  # (method, recipient, SEQUENCE)


def tomorrow_at(hour: int, zone: str, days: int = 1) -> datetime:
    """``hour`` o'clock in ``zone``, ``days`` days from today (UTC)."""
    day = datetime.now(UTC).astimezone(ZoneInfo(zone)).date() + timedelta(days=days)
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def _row(crm: str, action: str, result: ActionResult) -> ActionRow:
    sent = tuple((m.method, m.recipient, m.sequence) for m in result.messages)
    meeting = result.meeting
    return ActionRow(crm, action, meeting.crm_record_id or "—", meeting.sequence, sent)


def life_cycle(system: DemoSystem, crm: str) -> tuple[Meeting, list[ActionRow]]:
    """Run the five actions on ``crm``, offer the .ics, deliver the mail; check the mail."""
    ctx = system.context(crm, PROVIDER_FOR[crm])
    zone = system.data.users[0].timezone
    start = tomorrow_at(15, zone)
    first, second, third = (Invitee(p.email, p.name) for p in map(system.person, (0, 1, 2)))
    result = schedule(
        ctx,
        ScheduleRequest(
            idempotency_key=f"demo-{crm}-schedule",
            subject=f"Pricing review on {crm}",
            start=start,
            end=start + timedelta(minutes=45),
            timezone=zone,
            invitees=(first, second),
            related=(system.record_page(crm),),
            description="Agenda: the proposal, the numbers, next steps.",
        ),
    )
    rows = [_row(crm, "schedule", result)]
    meeting = result.meeting
    edits: list[tuple[str, dict[str, Any]]] = [
        (
            "edit time",
            {"start": start + timedelta(hours=1), "end": meeting.end + timedelta(hours=1)},
        ),
        (f"add {_who(third.email)}", {"invitees": (first, second, third)}),
        (f"remove {_who(second.email)}", {"invitees": (first, third)}),
    ]
    for number, (label, changes) in enumerate(edits, 1):
        request = EditRequest(
            idempotency_key=f"demo-{crm}-edit-{number}",
            meeting=meeting.id,
            expected_version=meeting.version,
            **changes,
        )
        result = edit(ctx, request)
        meeting = result.meeting
        rows.append(_row(crm, label, result))
    offered = add_to_calendar(ctx, ViewRequest(meeting=meeting.id))
    if offered.ics is not None:
        system.offer_ics(f"{crm}-{meeting.crm_record_id or meeting.id}", offered.ics)
    result = cancel(ctx, MeetingRequest(idempotency_key=f"demo-{crm}-cancel", meeting=meeting.id))
    rows.append(_row(crm, "cancel", result))
    system.deliver()
    _check_sequences(crm, rows)
    return result.meeting, rows


def _check_sequences(crm: str, rows: list[ActionRow]) -> None:
    """Every invitee's messages: SEQUENCE strictly increasing, the last one a CANCEL."""
    sent: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in rows:
        for method, recipient, sequence in row.sent:
            sent[recipient].append((method, sequence))
    for recipient, messages in sent.items():
        sequences = [sequence for _, sequence in messages]
        if any(a >= b for a, b in itertools.pairwise(sequences)):
            raise CrmMeetingsError(f"{crm}: {recipient} got SEQUENCE {sequences}, not increasing")
        if messages[-1][0] != "CANCEL":
            raise CrmMeetingsError(f"{crm}: {recipient} was not sent the cancellation")


def _who(email: str) -> str:
    return email.partition("@")[0]


def table(rows: list[ActionRow]) -> Table:
    """CRM, action, record id, SEQUENCE and who was sent what (local parts of addresses)."""
    grid = Table(title="Meeting life cycle on each CRM (mail delivered to the SMTP sink)")
    for column in ("CRM", "action", "CRM record", "SEQ"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("sent", overflow="fold")
    for row in rows:
        by_method: dict[str, list[str]] = defaultdict(list)
        for method, recipient, _ in row.sent:
            by_method[method].append(_who(recipient))
        sent = "; ".join(f"{method} → {', '.join(who)}" for method, who in by_method.items())
        grid.add_row(row.crm, row.action, row.record_id, str(row.sequence), sent or "—")
    return grid
