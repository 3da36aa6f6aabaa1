"""Free slots: working hours in the owner's zone, minus busy meetings from the store."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from crm_meetings.model import Invitee, MeetingStatus, Person, ResponseStatus
from crm_meetings.routing.slots import busy_in_store, free_slots
from crm_meetings.store import Store

HOUR = timedelta(hours=1)
MONDAY = datetime(2026, 3, 23, 0, 0, tzinfo=UTC)  # the week Paris moves to summer time


def test_working_hours_in_the_owners_zone_minus_busy() -> None:
    busy = [(MONDAY.replace(hour=9), MONDAY.replace(hour=10))]  # 10:00-11:00 in Paris
    slots = free_slots(busy, start=MONDAY, end=MONDAY + timedelta(days=1), duration=HOUR,
                       zone="Europe/Paris", step=HOUR, limit=20)  # fmt: skip
    starts = [s.hour for s, _ in slots]
    assert starts == [8, 10, 11, 12, 13, 14, 15]  # 09:00-17:00 Paris = 08:00-16:00 UTC
    assert all(e - s == HOUR for s, e in slots)


def test_dst_moves_working_hours_in_utc_not_on_the_wall_clock() -> None:
    friday, monday = MONDAY + timedelta(days=4), MONDAY + timedelta(days=7)
    slots = free_slots([], start=friday, end=monday + timedelta(days=1), duration=HOUR,
                       zone="Europe/Paris", hours=(time(9), time(10)))  # fmt: skip
    assert [s for s, _ in slots] == [friday.replace(hour=8), monday.replace(hour=7)]


def test_busy_meetings_come_from_the_store(store: Store, make_meeting: Any) -> None:
    owner = "olivia@acme.example"
    day = MONDAY + timedelta(days=1)
    organized = make_meeting(start=day.replace(hour=8), end=day.replace(hour=9))
    invited = make_meeting(
        start=day.replace(hour=12), end=day.replace(hour=13),
        organizer=Person("paul@acme.example"), invitees=(Invitee(owner),),
    )  # fmt: skip
    declined = make_meeting(
        start=day.replace(hour=14), end=day.replace(hour=15),
        organizer=Person("paul@acme.example"),
        invitees=(Invitee(owner, response=ResponseStatus.DECLINED),),
    )  # fmt: skip
    cancelled = make_meeting(start=day.replace(hour=10), end=day.replace(hour=11),
                             status=MeetingStatus.CANCELLED)  # fmt: skip
    with store.transaction() as uow:
        for meeting in (organized, invited, declined, cancelled):
            uow.meetings.add(meeting)
        busy = busy_in_store(uow, owner, start=day, end=day + timedelta(days=1))
    assert busy == [(organized.start, organized.end), (invited.start, invited.end)]
    slots = free_slots(busy, start=day, end=day + timedelta(days=1), duration=HOUR,
                       zone="Europe/Paris", step=HOUR, limit=20)  # fmt: skip
    assert [s.hour for s, _ in slots] == [9, 10, 11, 13, 14, 15]
