"""Repository behaviour, run on SQLite and on PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from crm_meetings.errors import ConflictError, NotFoundError, StoreError, ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    MeetingStatus,
    Participant,
    RecordRef,
    ResponseStatus,
    Session,
)
from crm_meetings.store import RunCounters, Store, SyncRunStatus

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import Clock, MeetingFactory

SESSION_START = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def test_meeting_round_trip_keeps_every_field(store: Store, make_meeting: MeetingFactory) -> None:
    meeting = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    with store.transaction() as uow:
        loaded = uow.meetings.get(meeting.id)
    assert loaded == meeting
    assert [i.email for i in loaded.invitees] == [
        "zed@client.example",
        "amy@client.example",
        "bob@acme.example",
    ]
    assert loaded.related == (RecordRef("Account", "001A"), RecordRef("Opportunity", "0061"))
    for value in (loaded.start, loaded.end, loaded.created_at, loaded.crm_modified_at):
        assert value is not None
        assert value.tzinfo is UTC


def test_datetimes_in_other_offsets_come_back_as_the_same_instant_in_utc(
    store: Store, make_meeting: MeetingFactory
) -> None:
    tokyo = timezone(timedelta(hours=9))
    start = datetime(2026, 7, 1, 18, 30, 15, 123456, tzinfo=tokyo)
    meeting = make_meeting(start=start, end=start + timedelta(minutes=45))
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    with store.transaction() as uow:
        loaded = uow.meetings.get(meeting.id)
    assert loaded.start == start
    assert loaded.start.tzinfo is UTC
    assert loaded.start.hour == 9
    assert loaded.start.microsecond == 123456


def test_lookups_by_uid_crm_record_provider_record_and_organizer(
    store: Store, make_meeting: MeetingFactory
) -> None:
    first = make_meeting(provider_meeting_id="850", related=(RecordRef("Account", "001A"),))
    second = make_meeting(provider_meeting_id="850", related=())
    other = make_meeting(
        crm=CrmKind.HUBSPOT,
        organizer=dataclasses.replace(first.organizer, email="someone@acme.example"),
        related=(RecordRef("Account", "001B"),),
        invitees=(),
    )
    with store.transaction() as uow:
        for meeting in (second, other, first):
            uow.meetings.add(meeting)
    with store.transaction() as uow:
        meetings = uow.meetings
        assert meetings.get_by_uid(first.uid) == first
        assert meetings.find_by_uid("nobody@crm-meetings") is None
        assert meetings.find_by_crm_record("salesforce", str(second.crm_record_id)) == second
        assert meetings.find_by_crm_record(CrmKind.HUBSPOT, str(second.crm_record_id)) is None
        assert meetings.find_by_crm_record("salesforce", "x", org_id="other") is None
        # by the CRM's record id first, else by our own id; in the org only
        assert meetings.find_by_reference("salesforce", str(second.crm_record_id)) == second
        assert meetings.find_by_reference(CrmKind.HUBSPOT, first.id) == first
        assert meetings.find_by_reference("salesforce", first.id, org_id="other") is None
        assert meetings.find_by_reference("salesforce", "nothing") is None
        assert meetings.find_by_provider_meeting("zoom", "850") == [first, second]
        assert meetings.list_for_record(RecordRef("Account", "001A")) == [first]
        # the second meeting's first invitee is that Contact: it shows on the Contact's page
        assert meetings.list_for_record(RecordRef("Contact", "0032")) == [second]
        assert meetings.list_for_record(RecordRef("Account", "001A"), org_id="other") == []
        assert meetings.list_by_organizer("Olivia@ACME.example") == [first, second]
        assert meetings.list_by_organizer(
            "olivia@acme.example", since=second.start, until=second.end
        ) == [second]


def test_missing_meeting_is_not_found_with_a_hint(store: Store) -> None:
    with store.transaction() as uow, pytest.raises(NotFoundError) as raised:
        uow.meetings.get("nope")
    assert "Meeting nope does not exist" in str(raised.value)
    assert raised.value.hint
    with store.transaction() as uow, pytest.raises(NotFoundError, match="UID"):
        uow.meetings.get_by_uid("nope@x")


def test_adding_a_taken_crm_record_is_a_conflict_and_the_transaction_goes_on(
    store: Store, make_meeting: MeetingFactory
) -> None:
    first = make_meeting(crm_record_id="00U1")
    clash = make_meeting(crm_record_id="00U1")
    fine = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(first)
        with pytest.raises(ConflictError, match=f"already belongs to meeting {first.id}"):
            uow.meetings.add(clash)
        with pytest.raises(ConflictError, match="id already exists"):
            uow.meetings.add(first)
        uow.meetings.add(fine)
    with store.transaction() as uow:
        assert uow.meetings.get(fine.id) == fine
        assert uow.meetings.find_by_uid(clash.uid) is None
    with store.transaction() as uow:  # the same record id in another org is another record
        uow.meetings.add(clash, org_id="acme-eu")


def test_save_writes_a_revision_and_replaces_invitees_in_their_new_order(
    store: Store, make_meeting: MeetingFactory, clock: Clock
) -> None:
    meeting = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    reordered = (
        meeting.invitees[2],
        dataclasses.replace(meeting.invitees[0], response=ResponseStatus.TENTATIVE),
        Invitee("new@client.example", "New"),
    )
    revised, change = meeting.revise(
        invitees=reordered, subject="Renamed", related=(), at=clock.advance(hours=1)
    )
    assert change.bumps_sequence
    with store.transaction() as uow:
        saved = uow.meetings.save(revised, expected_version=meeting.version)
    assert saved == revised
    assert saved.version == meeting.version + 1
    with store.transaction() as uow:
        assert uow.meetings.get(meeting.id) == revised


def test_save_from_a_stale_version_is_a_conflict_naming_both_versions(
    store: Store, make_meeting: MeetingFactory
) -> None:
    meeting = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    theirs, _ = meeting.revise(subject="Theirs")
    mine, _ = meeting.revise(location="Room 5")
    with store.transaction() as uow:
        uow.meetings.save(theirs, expected_version=meeting.version)
    with store.transaction() as uow, pytest.raises(ConflictError) as raised:
        uow.meetings.save(mine, expected_version=meeting.version)
    assert "it is at version 2, your edit started from version 1" in raised.value.message
    assert f"Reload meeting {meeting.id}" in raised.value.hint
    with store.transaction() as uow:
        assert uow.meetings.get(meeting.id).subject == "Theirs"


def test_save_refuses_a_new_uid_and_an_unknown_meeting(
    store: Store, make_meeting: MeetingFactory
) -> None:
    meeting = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    with store.transaction() as uow, pytest.raises(ValidationError, match="uid"):
        uow.meetings.save(dataclasses.replace(meeting, uid="other@x"), meeting.version)
    with store.transaction() as uow, pytest.raises(NotFoundError):
        uow.meetings.save(make_meeting(), expected_version=1)


def test_concurrent_saves_of_one_version_let_exactly_one_win(
    store: Store, make_meeting: MeetingFactory
) -> None:
    meeting = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    barrier = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []

    def edit(subject: str) -> None:
        revised, _ = meeting.revise(subject=subject)
        barrier.wait()
        try:
            with store.transaction() as uow:
                uow.meetings.save(revised, expected_version=meeting.version)
            outcomes.append("saved")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=edit, args=(f"Edit {n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict", "saved"]
    with store.transaction() as uow:
        assert uow.meetings.get(meeting.id).version == 2


def test_set_status_cancels_and_bumps_sequence(
    store: Store, make_meeting: MeetingFactory, clock: Clock
) -> None:
    meeting = make_meeting()
    with store.transaction() as uow:
        uow.meetings.add(meeting)
    later = clock.advance(minutes=3)
    with store.transaction() as uow:
        cancelled = uow.meetings.set_status(meeting.id, "cancelled")
        assert uow.meetings.set_status(meeting.id, MeetingStatus.CANCELLED) == cancelled
    assert cancelled.status is MeetingStatus.CANCELLED
    assert cancelled.sequence == meeting.sequence + 1
    assert cancelled.updated_at == later
    with store.transaction() as uow:
        assert uow.meetings.get(meeting.id) == cancelled


def test_an_exception_rolls_the_whole_unit_of_work_back(
    store: Store, make_meeting: MeetingFactory
) -> None:
    meeting = make_meeting()

    def fail_half_way() -> None:
        with store.transaction() as uow:
            uow.meetings.add(meeting)
            uow.checkpoints.set("default", "zoom", "meetings", "c1")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_half_way()
    with store.transaction() as uow:
        assert uow.meetings.find_by_uid(meeting.uid) is None
        assert uow.checkpoints.get("default", "zoom", "meetings") is None


# --- sessions -------------------------------------------------------------------------


def _session(session_id: str, *people: str, minutes: int = 30) -> Session:
    start = SESSION_START
    return Session(
        provider="zoom",
        provider_session_id=session_id,
        provider_meeting_id="8000000001",
        start=start,
        end=start + timedelta(minutes=minutes),
        participants=tuple(
            Participant(
                name=person.title(),
                email=f"{person}@client.example" if person != "guest" else None,
                join_time=start + timedelta(minutes=n),
                leave_time=start + timedelta(minutes=minutes),
                attended_seconds=(minutes - n) * 60 if n % 2 else None,
            )
            for n, person in enumerate(people)
        ),
    )


def test_session_upsert_is_idempotent_and_replaces_participants(
    store: Store, make_meeting: MeetingFactory
) -> None:
    meeting = make_meeting()
    first = _session("uuid-1==", "zed", "amy", "guest")
    second = _session("uuid-2/x", "bob")
    with store.transaction() as uow:
        uow.meetings.add(meeting)
        result = uow.sessions.upsert_many([second, first], meeting.id)
    assert (result.inserted, result.updated, result.unchanged) == (2, 0, 0)
    assert result.participants_written == 4
    with store.transaction() as uow:
        again = uow.sessions.upsert_many([first, second], meeting.id)
        stored = uow.sessions.list_for_meeting(meeting.id)
    assert (again.written, again.unchanged, again.participants_written) == (0, 2, 0)
    assert sorted(stored, key=lambda s: s.provider_session_id) == [first, second]

    longer = _session("uuid-1==", "amy", "zed", minutes=50)
    with store.transaction() as uow:
        changed = uow.sessions.upsert_many([longer], meeting.id)
        assert uow.sessions.find("zoom", "uuid-1==") == longer
        assert uow.sessions.find("zoom", "uuid-9") is None
        assert len(uow.sessions.list_for_provider_meeting("zoom", "8000000001")) == 2
    assert (changed.updated, changed.participants_written) == (1, 2)


def test_unmatched_sessions_are_kept_and_can_be_attached_later(
    store: Store, make_meeting: MeetingFactory
) -> None:
    meeting = make_meeting()
    session = _session("uuid-3", "zed")
    with store.transaction() as uow:
        uow.meetings.add(meeting)
        assert uow.sessions.upsert_many([session], None).inserted == 1
        assert uow.sessions.list_for_meeting(meeting.id) == []
        assert uow.sessions.upsert_many([session], meeting.id).updated == 1
        assert uow.sessions.list_for_meeting(meeting.id) == [session]
    with store.transaction() as uow, pytest.raises(NotFoundError, match="does not exist"):
        uow.sessions.upsert_many([session], "no-such-meeting")


def test_sessions_of_many_meetings_are_upserted_and_listed_at_once(
    store: Store, make_meeting: MeetingFactory
) -> None:
    one, two, empty = (make_meeting(provider="zoom", provider_meeting_id=p) for p in "123")
    first, second = _session("uuid-a", "zed", "amy"), _session("uuid-b", "bob")
    stored = _session("uuid-c", "guest")
    with store.transaction() as uow:
        for meeting in (one, two, empty):
            uow.meetings.add(meeting)
        uow.sessions.upsert_many([stored], None)
    longer = dataclasses.replace(stored, end=stored.end + timedelta(minutes=5))
    with store.transaction() as uow:
        result = uow.sessions.upsert_attached([(one.id, [first, second]), (two.id, [longer])])
    assert (result.inserted, result.updated, result.unchanged) == (2, 1, 0)
    assert result.participants_written == 4
    with store.transaction() as uow:
        again = uow.sessions.upsert_attached([(one.id, [second, first]), (two.id, [longer])])
        listed = uow.sessions.list_for_meetings([one.id, two.id, empty.id])
        found = uow.meetings.find_by_provider_meetings("zoom", ["1", "3", "nothing", "1"])
    assert (again.written, again.unchanged) == (0, 3)
    assert listed == {one.id: [first, second], two.id: [longer], empty.id: []}
    assert found == {"1": [one], "3": [empty]}
    with store.transaction() as uow, pytest.raises(NotFoundError, match="no-such-meeting"):
        uow.sessions.upsert_attached([(one.id, [first]), ("no-such-meeting", [])])


# --- checkpoints and runs -------------------------------------------------------------


def test_checkpoints_per_org_source_and_object(store: Store, clock: Clock) -> None:
    with store.transaction() as uow:
        assert uow.checkpoints.get("default", "zoom", "meetings") is None
        uow.checkpoints.set("default", "zoom", "meetings", "2026-03-01T00:00:00Z")
        uow.checkpoints.set("acme-eu", "zoom", "meetings", "other-org")
    later = clock.advance(hours=24)
    with store.transaction() as uow:
        uow.checkpoints.set("default", "zoom", "meetings", "2026-03-02T00:00:00Z")
        uow.checkpoints.set("default", "salesforce", "Event", "page-7")
    with store.transaction() as uow:
        assert uow.checkpoints.get("default", "zoom", "meetings") == "2026-03-02T00:00:00Z"
        assert uow.checkpoints.get("acme-eu", "zoom", "meetings") == "other-org"
        listed = uow.checkpoints.list_for_org("default")
    assert [(c.source, c.object_name, c.cursor) for c in listed] == [
        ("salesforce", "Event", "page-7"),
        ("zoom", "meetings", "2026-03-02T00:00:00Z"),
    ]
    assert all(c.updated_at == later for c in listed)


def test_sync_runs_record_progress_outcome_and_counters(store: Store, clock: Clock) -> None:
    counters = RunCounters(
        meetings_seen=12,
        sessions_written=5,
        participants_written=19,
        unmatched=1,
        api_calls={"zoom": {"GET /past_meetings/{uuid}/participants": 5}, "salesforce": {}},
        errors=("Meeting m7: not found — check the id",),
    )
    with store.transaction() as uow:
        nightly = uow.runs.start("nightly")
        manual = uow.runs.start(
            "manual", org_id="acme-eu", organizer="Olivia@Acme.example", meeting_id="m1"
        )
        uow.runs.progress(nightly, RunCounters(meetings_seen=3))
        assert uow.runs.get(nightly).counters.meetings_seen == 3
    started = clock.now
    finished_at = clock.advance(minutes=7)
    with store.transaction() as uow:
        finished = uow.runs.finish(nightly, SyncRunStatus.PARTIAL, counters)
        with pytest.raises(ConflictError, match="already finished"):
            uow.runs.finish(nightly, "succeeded", counters)
        with pytest.raises(ValidationError):
            uow.runs.finish(manual, "running", counters)
    assert finished.status is SyncRunStatus.PARTIAL
    assert (finished.started_at, finished.finished_at) == (started, finished_at)
    assert finished.counters == counters
    assert finished.counters.api_calls_total == 5
    with store.transaction() as uow:
        assert uow.runs.get(nightly) == finished
        recent = uow.runs.list_recent(limit=10)
        assert [run.id for run in recent] == [manual, nightly]  # same start: newest id first
        assert recent[0].organizer == "olivia@acme.example"
        assert recent[0].status is SyncRunStatus.RUNNING
        assert [run.id for run in uow.runs.list_recent(org_id="acme-eu")] == [manual]
        assert uow.runs.list_recent(limit=1) == [recent[0]]
        with pytest.raises(NotFoundError):
            uow.runs.get(10_000)


def test_a_transaction_inside_another_is_refused_not_left_waiting(store: Store) -> None:
    with store.transaction() as outer:
        outer.checkpoints.set("default", "zoom", "meetings", "kept")
        with pytest.raises(StoreError, match="already open") as raised, store.transaction():
            pass  # pragma: no cover
        assert "Pass the open unit of work down" in raised.value.hint
    with store.transaction() as uow:
        assert uow.checkpoints.get("default", "zoom", "meetings") == "kept"
