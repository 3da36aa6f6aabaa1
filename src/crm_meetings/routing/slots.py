"""The owner's free slots, offered to a trusted request.

:func:`free_slots` is pure: working hours in the owner's zone (local wall-clock times,
so a DST change moves them in UTC, not on the clock), stepped every ``step``, minus the
busy intervals. :func:`busy_in_store` reads the busy intervals from the store: meetings
the owner organizes or attends (not declined) that are still scheduled.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from crm_meetings.errors import ValidationError
from crm_meetings.model import MeetingStatus, ResponseStatus, normalize_email, utc
from crm_meetings.store.tables import InviteeRow, MeetingRow
from crm_meetings.store.unit_of_work import UnitOfWork

__all__ = ["Slot", "busy_in_store", "free_slots"]

Slot = tuple[datetime, datetime]


def free_slots(
    busy: Iterable[Slot],
    *,
    start: datetime,
    end: datetime,
    duration: timedelta,
    zone: str,
    hours: tuple[time, time] = (time(9), time(17)),
    step: timedelta = timedelta(minutes=30),
    weekdays: frozenset[int] = frozenset(range(5)),
    limit: int = 10,
) -> list[Slot]:
    """Up to ``limit`` free ``duration``-long slots in [start, end), earliest first (UTC)."""
    if duration <= timedelta(0) or step <= timedelta(0):
        raise ValidationError("duration", "duration and step must be positive")
    start, end = utc(start, "start"), utc(end, "end")
    tz = ZoneInfo(zone)
    taken = sorted((utc(a, "busy"), utc(b, "busy")) for a, b in busy)
    found: list[Slot] = []
    day = start.astimezone(tz).date()
    while len(found) < limit and datetime.combine(day, time(), tz) < end:
        if day.weekday() in weekdays:
            opens = datetime.combine(day, hours[0], tz).astimezone(UTC)
            closes = datetime.combine(day, hours[1], tz).astimezone(UTC)
            slot = opens
            while slot + duration <= min(closes, end) and len(found) < limit:
                finish = slot + duration
                if slot >= start and not any(a < finish and slot < b for a, b in taken):
                    found.append((slot, finish))
                slot += step
        day += timedelta(days=1)
    return found


def busy_in_store(uow: UnitOfWork, owner: str, *, start: datetime, end: datetime) -> list[Slot]:
    """Scheduled meetings overlapping [start, end) that ``owner`` organizes or attends."""
    email = normalize_email(owner, "owner")
    attends = sa.exists().where(
        InviteeRow.meeting_id == MeetingRow.id,
        InviteeRow.email == email,
        InviteeRow.response != ResponseStatus.DECLINED.value,
    )
    query = sa.select(MeetingRow.starts_at, MeetingRow.ends_at).where(
        MeetingRow.status == MeetingStatus.SCHEDULED.value,
        MeetingRow.starts_at < utc(end, "end"),
        MeetingRow.ends_at > utc(start, "start"),
        sa.or_(MeetingRow.organizer_email == email, attends),
    )
    return [(a, b) for a, b in uow.session.execute(query.order_by(MeetingRow.starts_at))]
