"""The VTIMEZONEs we emit describe the zone correctly, read back by two parsers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import vobject
from icalendar import Calendar, Timezone

from crm_meetings.calendar.vtimezone import vtimezone

AROUND = datetime(2026, 3, 10, 8, tzinfo=UTC)
DAY = timedelta(days=1)
REGULAR = [
    "Europe/Paris",
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",  # negative DST in tzdata: winter is the "daylight" time there
    "Australia/Sydney",  # southern hemisphere
    "Australia/Lord_Howe",  # half-hour DST
    "Pacific/Chatham",  # +12:45 / +13:45
]


def offsets_agree(tz: Any, zone: ZoneInfo) -> list[datetime]:
    """Instants of mid-2025 to 2027 where ``tz`` and ``zone`` disagree.

    Every 6 hours, and every 15 minutes on days when ``zone`` changes its offset.
    """
    wrong = []
    day = datetime(2025, 6, 1, tzinfo=UTC)
    while day < datetime(2028, 1, 1, tzinfo=UTC):
        changes = day.astimezone(zone).utcoffset() != (day + DAY).astimezone(zone).utcoffset()
        step = timedelta(minutes=15) if changes else timedelta(hours=6)
        moment = day
        while moment < day + DAY:
            if moment.astimezone(tz).utcoffset() != moment.astimezone(zone).utcoffset():
                wrong.append(moment)
            moment += step
        day += DAY
    return wrong


def renamed(zone_name: str) -> str:
    """The VTIMEZONE under a TZID no parser knows, so it must read our rules."""
    component = vtimezone(zone_name, AROUND)
    assert component is not None
    return (
        component.to_ical()
        .decode()
        .replace(f"TZID:{zone_name}", f"TZID:Own/{zone_name.replace('/', '-')}")
    )


@pytest.mark.parametrize("zone_name", REGULAR)
def test_regular_zone_has_one_rrule_per_observance(zone_name: str) -> None:
    component = vtimezone(zone_name, AROUND)
    assert component is not None
    text = component.to_ical().decode()
    assert "RDATE" not in text
    assert text.count("BEGIN:STANDARD") == 1
    assert text.count("BEGIN:DAYLIGHT") == 1
    assert text.count("RRULE:FREQ=YEARLY") == 2
    daylight = next(iter(component.walk("DAYLIGHT")))
    standard = next(iter(component.walk("STANDARD")))
    assert daylight.decoded("TZOFFSETTO") > standard.decoded("TZOFFSETTO")


@pytest.mark.parametrize("zone_name", REGULAR)
def test_icalendar_reads_back_the_same_offsets(zone_name: str) -> None:
    tz = Timezone.from_ical(renamed(zone_name)).to_tz()
    assert offsets_agree(tz, ZoneInfo(zone_name)) == []


@pytest.mark.parametrize("zone_name", REGULAR)
def test_vobject_reads_back_the_same_offsets(zone_name: str) -> None:
    text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{renamed(zone_name)}END:VCALENDAR\r\n"
    tz = vobject.readOne(text).vtimezone.gettzinfo()
    assert offsets_agree(tz, ZoneInfo(zone_name)) == []


def test_onsets_are_local_time_before_the_change() -> None:
    component = vtimezone("America/New_York", AROUND)
    assert component is not None
    text = component.to_ical().decode()
    # 2 a.m. EST jumps to 3 a.m. EDT; 2 a.m. EDT falls back to 1 a.m. EST (RFC 5545 §3.6.5)
    assert "DTSTART:20250309T020000\r\nRRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3" in text
    assert "DTSTART:20251102T020000\r\nRRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11" in text


def test_fixed_offset_zone_has_one_standard_observance() -> None:
    component = vtimezone("Asia/Kolkata", AROUND)
    assert component is not None
    (standard,) = component.walk("STANDARD")
    assert standard.decoded("TZOFFSETTO") == timedelta(hours=5, minutes=30)
    assert standard.decoded("TZOFFSETFROM") == timedelta(hours=5, minutes=30)
    assert not component.walk("DAYLIGHT")


@pytest.mark.parametrize("zone_name", ["UTC", "Etc/UTC", "Africa/Casablanca"])
def test_utc_and_irregular_zones_give_none(zone_name: str) -> None:
    assert vtimezone(zone_name, AROUND) is None


def test_the_calendar_validates_its_own_timezone_use() -> None:
    component = vtimezone("Europe/Paris", AROUND)
    assert component is not None
    calendar = Calendar()
    calendar.add_component(component)
    assert calendar.get_missing_tzids() == set()
