"""Pure mapping helpers shared by the providers: vendor times and participants."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from crm_meetings.errors import ValidationError
from crm_meetings.model import Participant

__all__ = ["iso_z", "parse_time", "participant", "windows"]

_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def parse_time(value: object, field_name: str = "time") -> datetime:
    """A vendor timestamp (``…Z``, ``…+00:00``, ``…+0000``, with or without millis) in UTC."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field_name, f"{value!r} is not a timestamp")
    text = _OFFSET.sub(r"\1:\2", value.strip().replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValidationError(field_name, f"{value!r} is not an ISO 8601 timestamp") from error
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def iso_z(value: datetime) -> str:
    """``2026-11-02T08:00:00Z``: what both vendors accept for a UTC instant."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def participant(
    name: str | None,
    email: str | None,
    join: datetime,
    leave: datetime,
    seconds: int | None = None,
) -> Participant:
    """A participant; an address the model rejects (phone dial-ins, junk) is dropped."""
    address: str | None = None
    if email:
        try:
            address = Participant(name="x", join_time=join, leave_time=join, email=email).email
        except ValidationError:
            address = None
    return Participant(
        name=((name or address or "Unknown").strip() or "Unknown")[:255],
        join_time=join,
        leave_time=max(join, leave),
        email=address,
        attended_seconds=seconds if seconds is None or seconds >= 0 else None,
    )


def windows(since: datetime, until: datetime, span: timedelta) -> list[tuple[datetime, datetime]]:
    """``[since, until)`` cut into consecutive windows of at most ``span``."""
    if span <= timedelta(0):
        raise ValueError(f"a window must last longer than zero, not {span}")
    out: list[tuple[datetime, datetime]] = []
    start = since
    while start < until:
        end = min(until, start + span)
        out.append((start, end))
        start = end
    return out
