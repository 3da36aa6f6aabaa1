"""The "copy invitation" text: what a rep pastes into a chat, a mail or a document.

:func:`invitation` gives the parts (so the e-mail's HTML body is built from the same
facts), :func:`invitation_text` the plain text. Dates are written in English without
the C library's locale, so the text is the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from crm_meetings.model import Meeting

__all__ = ["Invitation", "invitation", "invitation_text", "render_text"]

_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class Invitation:
    """A meeting as a person reads it: a title, labelled facts, then the description."""

    title: str
    facts: tuple[tuple[str, str], ...]
    description: str
    join_url: str | None


def invitation(meeting: Meeting, *, dial_in: str | None = None) -> Invitation:
    """The facts of ``meeting`` for people; ``dial_in`` is the provider's phone details."""
    facts: list[tuple[str, str]] = [
        ("When", f"{_span(meeting.local_start, meeting.local_end)} ({meeting.timezone})"),
    ]
    if meeting.timezone != "UTC":
        facts.append(("UTC", _span(meeting.start.astimezone(UTC), meeting.end.astimezone(UTC))))
    if meeting.location:
        facts.append(("Where", meeting.location))
    if meeting.join_url:
        facts.append(("Join", meeting.join_url))
    if dial_in and dial_in.strip():
        facts.append(("Dial-in", dial_in.strip()))
    organizer = meeting.organizer
    facts.append(
        (
            "Organizer",
            f"{organizer.name} <{organizer.email}>" if organizer.name else organizer.email,
        )
    )
    description = meeting.description.replace("\r\n", "\n").replace("\r", "\n").strip()
    return Invitation(meeting.subject, tuple(facts), description, meeting.join_url)


def invitation_text(meeting: Meeting, *, dial_in: str | None = None) -> str:
    """The plain-text invitation, lines ending in LF."""
    return render_text(invitation(meeting, dial_in=dial_in))


def render_text(parts: Invitation) -> str:
    """``parts`` as plain text: multi-line facts are indented under their label."""
    width = max(len(label) for label, _ in parts.facts) + 2
    lines = [parts.title, ""]
    for label, value in parts.facts:
        head, *rest = value.splitlines() or [""]
        lines.append(f"{label + ':':<{width}}{head}")
        lines.extend(" " * width + line for line in rest)
    if parts.description:
        lines += ["", parts.description]
    return "\n".join(lines) + "\n"


def _span(start: datetime, end: datetime) -> str:
    """``Tuesday, 10 March 2026, 09:00–10:00 CET``, with both dates when they differ."""
    if start.date() == end.date():
        return f"{_date(start)}, {_time(start)}–{_time(end)} {end.tzname()}"
    return f"{_moment(start)} – {_moment(end)}"


def _moment(moment: datetime) -> str:
    return f"{_date(moment)}, {_time(moment)} {moment.tzname()}"


def _date(moment: datetime) -> str:
    return f"{_DAYS[moment.weekday()]}, {moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _time(moment: datetime) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"
