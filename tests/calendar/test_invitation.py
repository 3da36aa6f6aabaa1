"""The "copy invitation" text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from crm_meetings.calendar.invitation import invitation_text
from crm_meetings.model import Meeting


def test_invitation_text_lists_the_facts(meeting: Meeting) -> None:
    text = invitation_text(meeting, dial_in="+1 555 0100\nPIN 4242")
    assert text == (
        "Quarterly review\n"
        "\n"
        "When:      Tuesday, 10 March 2026, 09:00–10:00 CET (Europe/Paris)\n"
        "UTC:       Tuesday, 10 March 2026, 08:00–09:00 UTC\n"
        "Where:     Room 4\n"
        "Join:      https://meet.example/j/123?pwd=abc\n"
        "Dial-in:   +1 555 0100\n"
        "           PIN 4242\n"
        "Organizer: Olga Organizer <olga@acme.example>\n"
        "\n"
        "Agenda: numbers, plans; next steps.\n"
    )


def test_meeting_across_midnight_and_dst_names_both_days(
    build_meeting: Callable[..., Meeting],
) -> None:
    meeting = build_meeting(
        timezone="America/New_York",
        start=datetime(2026, 7, 1, 3, 30, tzinfo=UTC),
        end=datetime(2026, 7, 1, 4, 30, tzinfo=UTC),
        join_url=None,
        location="",
        description="",
    )
    text = invitation_text(meeting)
    assert "When:      Tuesday, 30 June 2026, 23:30 EDT – Wednesday, 1 July 2026, 00:30 EDT" in text
    assert "Join" not in text
    assert "Dial-in" not in text
    assert text.endswith("Organizer: Olga Organizer <olga@acme.example>\n")


def test_utc_organizer_gets_one_time_line(build_meeting: Callable[..., Meeting]) -> None:
    text = invitation_text(build_meeting(timezone="UTC"))
    assert "When:      Tuesday, 10 March 2026, 08:00–09:00 UTC (UTC)\n" in text
    assert "\nUTC:" not in text
