"""VTIMEZONE components that Outlook, Google and Apple Calendar all read the same way.

icalendar's ``Timezone.from_tzinfo`` lists every transition as RDATEs, and writes the
spring onsets in the new offset instead of the old one (RFC 5545 §3.6.5 wants local
time *before* the change). Outlook ignores RDATEs and expects one STANDARD and one
DAYLIGHT observance with a yearly RRULE, as it writes itself. So we derive those rules
from zoneinfo, check them against the zone's real transitions for the years around the
meeting, and refuse (``None``) when the zone is not regular enough to be described that
way; the caller then writes UTC times, which every client understands.

Deriving the rules scans three years of the zone day by day (about a millisecond), and
every invitation, update and cancellation needs them; they depend only on the zone and
the meeting's year, so they are computed once per (zone, year) and kept
(:func:`_observances`, a pure function behind an LRU cache). Each call of :func:`vtimezone`
still builds a new component from them, so callers may change what they get; writing one
takes longer than deriving it, so :func:`vtimezone_ical` keeps the written bytes per
(zone, year) too, for the invitations.
"""

from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard, vRecur

__all__ = ["vtimezone", "vtimezone_ical"]

_WEEKDAYS: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_DAY: Final = timedelta(days=1)
_ZERO: Final = timedelta(0)
# Years checked around the meeting: the rule must hold for all of them.
_YEARS_BEFORE: Final = 1
_YEARS_AFTER: Final = 2
#: (zone, year) pairs whose rules are kept: a few zones over a few years in practice
_CACHED_YEARS: Final = 512


@dataclass(frozen=True, slots=True)
class _Transition:
    onset: datetime  # naive local wall time in the offset that ends here
    offset_from: timedelta
    offset_to: timedelta
    name: str


@dataclass(frozen=True, slots=True)
class _Rule:
    month: int
    weekday: int
    ordinal: int  # 1..4, or -1 for "last"
    time: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Observance:
    """One STANDARD or DAYLIGHT observance: its first onset and yearly rule (``None``: a
    fixed offset)."""

    transition: _Transition
    daylight: bool
    rule: _Rule | None


def vtimezone(zone_name: str, around: datetime) -> Timezone | None:
    """A VTIMEZONE for ``zone_name`` valid for ``around``, or ``None`` to write UTC times.

    A zone without transitions near ``around`` gets one STANDARD observance; a zone with
    yearly rules gets one STANDARD and one DAYLIGHT with an RRULE each. Zones whose
    rules are irregular (moving dates, recent rule changes) or a fixed UTC offset of zero
    give ``None``.
    """
    return _vtimezone(zone_name, around.year)


def vtimezone_ical(zone_name: str, around: datetime) -> bytes | None:
    """:func:`vtimezone` as iCalendar text (CRLF lines, folded), or ``None``: the same bytes
    as the component gives, made once per (zone, year)."""
    return _written(zone_name, around.year)


@lru_cache(maxsize=_CACHED_YEARS)
def _written(zone_name: str, year: int) -> bytes | None:
    component = _vtimezone(zone_name, year)
    return None if component is None else bytes(component.to_ical())


def _vtimezone(zone_name: str, year: int) -> Timezone | None:
    observances = _observances(zone_name, year)
    if observances is None:
        return None
    component = Timezone()
    component.add("TZID", zone_name)
    for observance in observances:
        component.add_component(_component(observance))
    return component


@lru_cache(maxsize=_CACHED_YEARS)
def _observances(zone_name: str, year: int) -> tuple[_Observance, ...] | None:
    """The observances describing ``zone_name`` around ``year``, or ``None`` (see
    :func:`vtimezone`). Pure: the same arguments give the same value."""
    zone = ZoneInfo(zone_name)
    first = datetime(year - _YEARS_BEFORE, 1, 1, tzinfo=UTC)
    last = datetime(year + _YEARS_AFTER + 1, 1, 1, tzinfo=UTC)
    transitions = _transitions(zone, first, last)
    if not transitions:
        local = first.astimezone(zone)
        offset = local.utcoffset() or _ZERO
        if offset == _ZERO:
            return None
        fixed = _Transition(
            onset=datetime(1970, 1, 1),
            offset_from=offset,
            offset_to=offset,
            name=local.tzname() or _offset_name(offset),
        )
        return (_Observance(fixed, daylight=False, rule=None),)
    groups: dict[timedelta, list[_Transition]] = {}
    for transition in transitions:
        groups.setdefault(transition.offset_to, []).append(transition)
    if len(groups) != 2:
        return None
    summer = max(groups)  # by offset, not zoneinfo's dst(): Europe/Dublin's is negative
    observances: list[_Observance] = []
    for offset_to, group in sorted(groups.items(), key=lambda item: item[1][0].onset):
        rule = _yearly_rule(group, years=last.year - first.year)
        if rule is None:
            return None
        observances.append(_Observance(group[0], daylight=offset_to == summer, rule=rule))
    return tuple(observances)


def _transitions(zone: ZoneInfo, first: datetime, last: datetime) -> list[_Transition]:
    """Every change of UTC offset in ``[first, last)``, found day by day then by bisection."""
    found: list[_Transition] = []
    day = first
    before = _offset(zone, day)
    while day < last:
        after = _offset(zone, day + _DAY)
        if after != before:
            low, high = day, day + _DAY
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    break
                if _offset(zone, middle) == before:
                    low = middle
                else:
                    high = middle
            local = high.astimezone(zone)
            found.append(
                _Transition(
                    onset=(high + before).replace(tzinfo=None),
                    offset_from=before,
                    offset_to=after,
                    name=local.tzname() or _offset_name(after),
                )
            )
        before = after
        day += _DAY
    return found


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or _ZERO


def _yearly_rule(group: list[_Transition], *, years: int) -> _Rule | None:
    """The one "n-th weekday of month at time" rule every transition follows, if any."""
    if len(group) != years or len({t.onset.year for t in group}) != years:
        return None
    if len({(t.offset_from, t.offset_to, t.name) for t in group}) != 1:
        return None
    rules: set[tuple[int, int, tuple[int, int, int]]] = set()
    ordinals: set[int] = set()
    all_last = True
    for transition in group:
        onset = transition.onset
        rules.add((onset.month, onset.weekday(), (onset.hour, onset.minute, onset.second)))
        ordinals.add((onset.day - 1) // 7 + 1)
        month_days = _calendar.monthrange(onset.year, onset.month)[1]
        all_last = all_last and onset.day + 7 > month_days
    if len(rules) != 1:
        return None
    ((month, weekday, time),) = rules
    if all_last:
        return _Rule(month, weekday, -1, time)
    if len(ordinals) == 1 and 1 <= (ordinal := ordinals.pop()) <= 4:
        return _Rule(month, weekday, ordinal, time)
    return None


def _component(observance: _Observance) -> TimezoneStandard | TimezoneDaylight:
    transition = observance.transition
    component = TimezoneDaylight() if observance.daylight else TimezoneStandard()
    component.add("DTSTART", transition.onset)
    component.add("TZNAME", transition.name)
    component.add("TZOFFSETFROM", transition.offset_from)
    component.add("TZOFFSETTO", transition.offset_to)
    rule = observance.rule
    if rule is not None:
        component.add(
            "RRULE",
            vRecur(
                freq="YEARLY",
                bymonth=rule.month,
                byday=f"{rule.ordinal}{_WEEKDAYS[rule.weekday]}",
            ),
        )
    return component


def _offset_name(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{minutes:02d}"
