"""Property: any valid meeting is read back from SQLite exactly as it was stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingStatus,
    Person,
    RecordRef,
    ResponseStatus,
)
from crm_meetings.store import Store, default_sqlite_url, upgrade

line = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=30)
text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")) | st.just("\n"), max_size=60
)
emails = st.from_regex(
    r"[a-z][a-z0-9]{0,6}(\.[a-z0-9]{1,4})?@[a-z]{1,8}\.(com|org|example)", fullmatch=True
)
idents = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True)
refs = st.builds(RecordRef, idents, idents)
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("America/New_York")]
    ),
)
invitees = st.lists(
    st.builds(
        Invitee,
        email=emails,
        name=line,
        response=st.sampled_from(ResponseStatus),
        optional=st.booleans(),
        crm_relation=st.none() | refs,
    ),
    max_size=4,
    unique_by=lambda invitee: invitee.email,
)


@st.composite
def meetings(draw: st.DrawFn) -> Meeting:
    start = draw(instants)
    meeting_id = uuid.uuid4().hex  # unique per example: examples share one database
    return Meeting(
        id=meeting_id,
        crm=draw(st.sampled_from(CrmKind)),
        subject=draw(line.filter(str.strip)),
        start=start,
        # add in UTC: wall-clock arithmetic in a DST zone can land before the start
        end=start.astimezone(UTC)
        + draw(st.timedeltas(timedelta(microseconds=1), timedelta(days=3))),
        timezone=draw(st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata"])),
        organizer=Person(draw(emails), draw(line)),
        uid=f"{meeting_id}@crm-meetings",
        crm_record_id=draw(st.none() | idents.map(lambda s: f"{meeting_id}-{s}")),
        description=draw(text),
        notes=draw(text),
        location=draw(line),
        join_url=draw(st.none() | idents.map(lambda s: f"https://meet.example/{s}")),
        invitees=tuple(draw(invitees)),
        related=tuple(draw(st.lists(refs, max_size=3))),
        record_type=draw(st.none() | idents),
        status=draw(st.sampled_from(MeetingStatus)),
        sequence=draw(st.integers(0, 1000)),
        provider=draw(st.none() | st.sampled_from(["zoom", "gotomeeting"])),
        provider_meeting_id=draw(st.none() | idents),
        created_at=draw(st.none() | instants),
        updated_at=draw(st.none() | instants),
        crm_modified_at=draw(st.none() | instants),
        version=draw(st.integers(1, 1000)),
    )


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    url = default_sqlite_url(tmp_path_factory.mktemp("property"))
    upgrade(url)
    with Store(url) as store:
        yield store


@settings(max_examples=30, deadline=None)
@given(meeting=meetings())
def test_any_meeting_round_trips_through_sqlite(sqlite_store: Store, meeting: Meeting) -> None:
    with sqlite_store.transaction() as uow:
        uow.meetings.add(meeting)
    with sqlite_store.transaction() as uow:
        assert uow.meetings.get(meeting.id) == meeting
