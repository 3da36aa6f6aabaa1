"""Booking through a rotation in the actions' unit of work: the member's count and the meeting
commit together, so a crash never leaves one without the other and a retry never counts twice.

One rig (Salesforce with Zoom) is enough here: the count lives in our store, not in the CRM;
every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.actions import (
    ActionContext,
    ActionKind,
    MeetingRequest,
    ScheduleRequest,
    cancel,
    delete,
    schedule,
)
from crm_meetings.errors import ConflictError, NotFoundError
from crm_meetings.model import MeetingStatus, Person
from crm_meetings.routing.rotations import BookingState, RotationRepository
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import DEFAULT_ORG_ID, Store

#: the action suite's helpers (crash hooks, the outbox reader, the request builder)
suite = load_module(Path(__file__).with_name("test_actions.py"), "rotation_booking_suite")
Crash, crash_at, outbox, stored_count = (
    suite.Crash,
    suite.crash_at,
    suite.outbox,
    suite.stored_count,
)
HOST = "rep0@sales.example.com"  # the seeded organizer both providers know; picked first
OTHER = "sam@sales.example.com"


#: only Salesforce with Zoom: the rotation's side does not depend on the CRM
pytestmark = pytest.mark.parametrize("rig", ["salesforce-zoom"], indirect=True)


@pytest.fixture
def rotation(store: Store) -> str:
    with store.transaction() as uow:
        return (
            uow.repository(RotationRepository)
            .create(DEFAULT_ORG_ID, "Inbound", users=[HOST, OTHER])
            .id
        )


def request_for(ctx: ActionContext, rig: Any, rotation: str, key: str = "k-rot") -> ScheduleRequest:
    return replace(suite.schedule_request(ctx, rig, key), rotation=rotation)


def counts(store: Store, rotation: str) -> dict[str, int]:
    with store.transaction() as uow:
        return {m.email: m.count for m in uow.repository(RotationRepository).get(rotation).members}


def booking_state(store: Store, meeting_id: str) -> BookingState | None:
    with store.transaction() as uow:
        found = uow.repository(RotationRepository).booking_for(meeting_id)
    return None if found is None else found.state


def test_the_rotation_picks_the_host_and_counts_the_booking_with_the_meeting(
    ctx: ActionContext, rig: Any, store: Store, rotation: str
) -> None:
    result = schedule(ctx, request_for(ctx, rig, rotation))
    assert result.meeting.organizer.email == HOST
    assert "rotation.book" in result.done
    booked = result.extra["rotation_booking"]
    assert booked["member"] == booked["suggested"] == HOST
    assert [c["email"] for c in booked["explanation"]["candidates"]] == [HOST, OTHER]
    assert counts(store, rotation) == {HOST: 1, OTHER: 0}
    assert booking_state(store, result.meeting.id) is BookingState.BOOKED
    again = schedule(ctx, request_for(ctx, rig, rotation))
    assert again.replayed
    assert counts(store, rotation) == {HOST: 1, OTHER: 0}


@pytest.mark.parametrize(
    "boundary", ["claimed", "provider.create", "crm.create", "commit", "store.rotation"]
)
def test_a_crash_at_any_step_counts_nothing_and_the_retry_counts_once(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, rotation: str, boundary: str
) -> None:
    request = request_for(ctx, rig, rotation)
    with pytest.raises(Crash):
        schedule(replace(ctx, hook=crash_at(boundary)), request)
    assert counts(store, rotation) == {HOST: 0, OTHER: 0}  # no count without its meeting
    assert stored_count(store, ctx) == 0
    assert outbox(store) == []
    clock.advance(minutes=6)  # the crashed attempt's lease runs out
    result = schedule(ctx, request)
    assert counts(store, rotation) == {HOST: 1, OTHER: 0}
    assert booking_state(store, result.meeting.id) is BookingState.BOOKED
    assert rig.crm_uids().count(result.meeting.uid) == 1
    assert schedule(ctx, request).replayed
    assert counts(store, rotation) == {HOST: 1, OTHER: 0}


def test_a_named_host_must_be_an_available_member(
    ctx: ActionContext, rig: Any, store: Store, rotation: str
) -> None:
    stranger = replace(request_for(ctx, rig, rotation), organizer=Person("eve@sales.example.com"))
    with pytest.raises(NotFoundError, match="not a member"):
        schedule(replace(ctx, admins=frozenset({HOST})), stranger)
    with store.transaction() as uow:
        uow.repository(RotationRepository).set_available(rotation, HOST, False)
    away = replace(request_for(ctx, rig, rotation, "k-away"), organizer=Person(HOST))
    with pytest.raises(ConflictError, match="unavailable"):
        schedule(ctx, away)
    with pytest.raises(NotFoundError, match="does not exist"):
        schedule(ctx, request_for(ctx, rig, "no-such-rotation", "k-none"))
    assert stored_count(store, ctx) == 0
    assert counts(store, rotation) == {HOST: 0, OTHER: 0}


@pytest.mark.parametrize("end", [cancel, delete])
def test_cancel_or_delete_gives_the_count_back_in_its_commit(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, rotation: str, end: Any
) -> None:
    meeting = schedule(ctx, request_for(ctx, rig, rotation)).meeting
    request = MeetingRequest(idempotency_key="k-end", meeting=meeting.id)
    kind = ActionKind.CANCEL if end is cancel else ActionKind.DELETE
    for boundary in ("commit", "store.rotation"):  # a crash before or inside the commit
        with pytest.raises(Crash):
            end(replace(ctx, hook=crash_at(boundary)), request)
        assert counts(store, rotation) == {HOST: 1, OTHER: 0}
        assert booking_state(store, meeting.id) is BookingState.BOOKED
        clock.advance(minutes=6)
    result = end(ctx, request)
    assert result.action is kind
    assert "rotation.unbook" in result.done
    assert counts(store, rotation) == {HOST: 0, OTHER: 0}
    assert booking_state(store, meeting.id) is BookingState(result.meeting.status.value)
    assert end(ctx, request).replayed
    assert counts(store, rotation) == {HOST: 0, OTHER: 0}


def test_a_cancelled_meeting_deleted_later_is_not_given_back_twice(
    ctx: ActionContext, rig: Any, store: Store, rotation: str
) -> None:
    first = schedule(ctx, request_for(ctx, rig, rotation)).meeting
    hosted = replace(request_for(ctx, rig, rotation, "k-rot-2"), organizer=Person(HOST))
    second = schedule(ctx, hosted).meeting
    assert second.organizer.email == first.organizer.email == HOST
    assert counts(store, rotation) == {HOST: 2, OTHER: 0}
    cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=first.id))
    assert counts(store, rotation) == {HOST: 1, OTHER: 0}
    result = delete(ctx, MeetingRequest(idempotency_key="k-delete", meeting=first.id))
    assert result.meeting.status is MeetingStatus.DELETED
    assert "rotation.unbook" in result.done
    assert counts(store, rotation) == {HOST: 1, OTHER: 0}
    assert booking_state(store, first.id) is BookingState.DELETED
