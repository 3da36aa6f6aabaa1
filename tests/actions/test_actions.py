"""The action suite: one set of tests, run on every rig (each CRM with a provider, sandboxed).

Each test checks the places an action leaves traces: the CRM (through the connector), the
conferencing provider (the emulator's state), the outbox, and our store (meeting row,
idempotency ledger, audit trail).
"""

from __future__ import annotations

import email
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from email.message import Message
from typing import Any

import pytest
import sqlalchemy as sa
from icalendar import Calendar

from crm_meetings.actions import (
    ActionContext,
    ActionKind,
    ActionLedger,
    EditRequest,
    LedgerStatus,
    MeetingRequest,
    ScheduleRequest,
    ViewRequest,
    add_to_calendar,
    cancel,
    delete,
    edit,
    find_meeting,
    schedule,
    share,
    sweep,
)
from crm_meetings.actions.codec import meeting_from_json
from crm_meetings.calendar.outbox import SmtpConfig, deliver_pending
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.conferencing._values import iso_z
from crm_meetings.errors import ConflictError, PermissionDeniedError, RemoteError, ValidationError
from crm_meetings.model import Invitee, MeetingStatus, RecordRef
from crm_meetings.store import Store

ZED = Invitee("zed@client.example", "Zed")
AMY = Invitee("amy@client.example", "Amy")
BOB = Invitee("bob@partner.example", "Bob")


class Crash(BaseException):
    """The process dies here: no handler runs, nothing is cleaned up."""


def crash_at(boundary: str) -> Callable[[ActionKind, str], None]:
    def hook(action: ActionKind, at: str) -> None:
        if at == boundary:
            raise Crash(boundary)

    return hook


def schedule_request(ctx: ActionContext, rig: Any, key: str = "k-schedule") -> ScheduleRequest:
    start = ctx.clock() + timedelta(days=2)
    return ScheduleRequest(
        idempotency_key=key,
        subject="Quarterly review",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Paris",
        invitees=(ZED, AMY),
        related=(rig.related,),
        description="Agenda: numbers",
    )


@dataclass
class Mail:
    recipient: str
    method: str
    uid: str
    sequence: int


def outbox(store: Store) -> list[Mail]:
    """Every queued message, in queue order, read back from its iCalendar part."""
    with store.transaction() as uow:
        rows = uow.session.scalars(sa.select(OutboxMessageRow).order_by(OutboxMessageRow.id))
        mails = []
        for row in rows:
            event = _event(email.message_from_bytes(row.raw))
            mails.append(Mail(row.recipient, row.method, str(event["UID"]), int(event["SEQUENCE"])))
        return mails


def _event(message: Message) -> Any:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            calendar = Calendar.from_ical(payload)
            assert str(calendar["METHOD"]) == part.get_param("method")
            return next(c for c in calendar.walk("VEVENT"))
    raise AssertionError("no text/calendar part")


def ledger_status(store: Store, ctx: ActionContext, key: str) -> LedgerStatus | None:
    with store.transaction() as uow:
        entry = uow.repository(ActionLedger).find(ctx.org_id, key)
        return None if entry is None else entry.status


def stored_count(store: Store, ctx: ActionContext) -> int:
    with store.transaction() as uow:
        return len(uow.meetings.list_by_organizer(ctx.actor.email))


# --- schedule ---------------------------------------------------------------------------


def test_schedule_writes_provider_crm_store_and_queues_one_request_per_invitee(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    result = schedule(ctx, schedule_request(ctx, rig))
    meeting = result.meeting
    assert meeting.crm_record_id is not None
    assert rig.crm_status(meeting.crm_record_id) is MeetingStatus.SCHEDULED
    assert meeting.uid in rig.crm_uids()
    assert rig.live() == [meeting.provider_meeting_id]
    assert meeting.join_url
    assert meeting.provider_meeting_id in meeting.join_url
    assert rig.provider_meeting(meeting.provider_meeting_id)["subject"] == "Quarterly review"
    assert find_meeting(ctx, meeting.crm_record_id) == meeting
    assert [(m.recipient, m.method, m.sequence) for m in outbox(store)] == [
        ("zed@client.example", "REQUEST", 0),
        ("amy@client.example", "REQUEST", 0),
    ]
    assert [m.recipient for m in result.messages] == ["zed@client.example", "amy@client.example"]
    assert result.done[-2:] == ("store.add", "mail.queue")


def test_a_repeat_returns_the_stored_result_and_does_nothing(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    request = schedule_request(ctx, rig)
    first = schedule(ctx, request)
    again = schedule(ctx, request)
    assert again.replayed
    assert not first.replayed
    assert again.meeting == first.meeting
    assert again.messages == first.messages
    assert rig.crm_uids().count(first.meeting.uid) == 1
    assert len(outbox(store)) == 2
    assert stored_count(store, ctx) == 1
    with store.transaction() as uow:
        outcomes = [e.outcome for e in uow.repository(ActionLedger).audit_trail(ctx.org_id)]
    assert outcomes == ["succeeded", "replayed"]


def test_the_same_key_for_another_request_is_a_conflict(ctx: ActionContext, rig: Any) -> None:
    request = schedule_request(ctx, rig)
    schedule(ctx, request)
    with pytest.raises(ConflictError, match="already used"):
        schedule(ctx, replace(request, subject="Something else"))
    with pytest.raises(ConflictError, match="already used"):
        cancel(ctx, MeetingRequest(idempotency_key=request.idempotency_key, meeting="x"))


def test_invalid_requests_are_refused_before_anything_happens(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    request = schedule_request(ctx, rig)
    with pytest.raises(ValidationError, match="end"):
        schedule(ctx, replace(request, end=request.start))
    past = ctx.clock() - timedelta(days=1)
    with pytest.raises(ValidationError, match="in the past"):
        schedule(ctx, replace(request, start=past, end=past + timedelta(hours=1)))
    with pytest.raises(ValidationError, match="idempotency_key"):
        replace(request, idempotency_key="has space")
    assert stored_count(store, ctx) == 0
    assert outbox(store) == []
    assert ledger_status(store, ctx, request.idempotency_key) is None


def test_a_double_click_while_the_first_runs_is_refused(
    ctx: ActionContext, rig: Any, store: Store, clock: Any
) -> None:
    request = schedule_request(ctx, rig)
    with pytest.raises(Crash):
        schedule(replace(ctx, hook=crash_at("claimed")), request)
    with pytest.raises(ConflictError, match="being processed"):
        schedule(ctx, request)
    clock.advance(minutes=6)  # the crashed attempt's lease runs out
    result = schedule(ctx, request)
    assert rig.crm_uids().count(result.meeting.uid) == 1


@pytest.mark.parametrize("boundary", ["claimed", "provider.create", "crm.create", "commit"])
def test_a_crash_at_any_step_then_a_retry_completes_exactly_once(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, boundary: str
) -> None:
    request = schedule_request(ctx, rig)
    with pytest.raises(Crash):
        schedule(replace(ctx, hook=crash_at(boundary)), request)
    assert outbox(store) == []
    assert stored_count(store, ctx) == 0
    clock.advance(minutes=6)
    result = schedule(ctx, request)
    assert rig.crm_uids().count(result.meeting.uid) == 1
    assert rig.live() == [result.meeting.provider_meeting_id]
    assert len(outbox(store)) == 2
    assert stored_count(store, ctx) == 1
    assert schedule(ctx, request).replayed


def test_a_crash_after_the_crm_create_of_a_meeting_on_no_record_leaves_one_crm_record(
    ctx: ActionContext, rig: Any, store: Store, clock: Any
) -> None:
    """Booking pages and the assistant schedule meetings related to no CRM record: the
    retry finds the record the crashed attempt made by the meeting's UID."""
    request = replace(schedule_request(ctx, rig), related=())
    with pytest.raises(Crash):  # the CRM made the record; its id was never saved
        schedule(replace(ctx, hook=crash_at("crm.create.answered")), request)
    assert rig.crm_creates() == 1
    clock.advance(minutes=6)
    result = schedule(ctx, request)
    assert result.meeting.crm_record_id is not None
    assert rig.crm_creates() == 1  # adopted by its UID: not even a refused second create
    assert rig.crm_count(result.meeting.uid) == 1
    assert rig.crm_status(result.meeting.crm_record_id) is MeetingStatus.SCHEDULED
    assert len(outbox(store)) == 2
    assert stored_count(store, ctx) == 1


def test_a_crm_refusal_after_the_provider_create_removes_the_provider_meeting(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    request = schedule_request(ctx, rig)
    rig.fail_crm("create", "refused")
    with pytest.raises(RemoteError) as raised:
        schedule(ctx, request)
    assert request.idempotency_key in raised.value.hint
    rig.clear()
    assert rig.crm_uids() == []
    assert outbox(store) == []
    assert stored_count(store, ctx) == 0
    assert rig.live() == []  # compensated: no orphan
    [removed] = rig.provider_ids()
    assert not rig.provider_meeting(removed)["notified"]  # removed quietly
    result = schedule(ctx, request)
    assert rig.crm_uids() == [result.meeting.uid]
    assert rig.live() == [result.meeting.provider_meeting_id]


def test_an_unknown_crm_outcome_keeps_the_provider_meeting_and_the_retry_adopts_the_record(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    request = schedule_request(ctx, rig)
    rig.fail_crm("create", "unknown")
    with pytest.raises(RemoteError):
        schedule(ctx, request)
    rig.clear()
    [kept] = rig.live()  # a CRM record may point to it: kept
    assert outbox(store) == []
    assert stored_count(store, ctx) == 0
    result = schedule(ctx, request)
    assert rig.crm_uids() == [result.meeting.uid]  # not created twice
    assert rig.live() == [kept] == [result.meeting.provider_meeting_id]
    assert len(outbox(store)) == 2


def test_a_crm_record_written_before_its_answer_was_lost_is_adopted_not_duplicated(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    request = schedule_request(ctx, rig)
    rig.fail_crm("create", "unknown")
    with pytest.raises(RemoteError):
        schedule(ctx, request)
    rig.clear()
    with store.transaction() as uow:
        entry = uow.repository(ActionLedger).find(ctx.org_id, request.idempotency_key)
    assert entry is not None
    pending = meeting_from_json(entry.state["new"])
    written = rig.connector.create(pending)  # the CRM had saved it; the 503 hid that
    result = schedule(ctx, request)
    assert result.meeting.crm_record_id == written.crm_record_id
    assert rig.crm_uids() == [pending.uid]
    assert rig.live() == [result.meeting.provider_meeting_id]


@pytest.mark.parametrize("kind", ["refused", "unknown"])
def test_provider_down_creates_nothing_anywhere(
    ctx: ActionContext, rig: Any, store: Store, kind: str
) -> None:
    request = schedule_request(ctx, rig)
    rig.fail_provider("create", kind)
    with pytest.raises(RemoteError):
        schedule(ctx, request)
    rig.clear()
    assert rig.crm_uids() == []
    assert rig.live() == []
    assert outbox(store) == []
    assert stored_count(store, ctx) == 0
    assert ledger_status(store, ctx, request.idempotency_key) is LedgerStatus.PENDING
    result = schedule(ctx, request)
    assert result.meeting.crm_record_id is not None
    assert rig.live() == [result.meeting.provider_meeting_id]


def test_only_the_organizer_or_an_admin_may_act(
    ctx: ActionContext, rig: Any, as_other: Callable[[ActionContext], ActionContext]
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    other = as_other(ctx)
    with pytest.raises(PermissionDeniedError):
        cancel(other, MeetingRequest(idempotency_key="k-other", meeting=meeting.id))
    admin = replace(other, admins=frozenset({other.actor.email}))
    assert cancel(admin, MeetingRequest(idempotency_key="k-admin", meeting=meeting.id)).meeting


def test_scheduling_on_a_record_the_crm_does_not_show_is_refused(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    bogus = RecordRef(rig.related.object_type, "999999999")
    request = replace(schedule_request(ctx, rig), related=(bogus,))
    with pytest.raises(PermissionDeniedError, match="does not show that record"):
        schedule(ctx, request)
    assert rig.live() == []
    assert stored_count(store, ctx) == 0
    assert ledger_status(store, ctx, request.idempotency_key) is None


# --- the sweeper ------------------------------------------------------------------------


def test_the_sweeper_finishes_what_a_crash_or_a_failure_left_pending(
    ctx: ActionContext, rig: Any, store: Store, clock: Any
) -> None:
    request = schedule_request(ctx, rig)
    with pytest.raises(Crash):
        schedule(replace(ctx, hook=crash_at("crm.create")), request)
    assert sweep(ctx) == []  # still leased to the crashed attempt
    clock.advance(minutes=6)
    [done] = sweep(ctx)
    assert (done.key, done.action, done.completed) == (request.idempotency_key, "schedule", True)
    assert stored_count(store, ctx) == 1
    assert len(outbox(store)) == 2
    meeting = schedule(ctx, request).meeting  # the rep's retry gets the sweeper's result
    assert rig.crm_uids() == [meeting.uid]
    assert rig.live() == [meeting.provider_meeting_id]

    cancelling = MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id)
    rig.fail_crm("update", "unknown")
    with pytest.raises(RemoteError):
        cancel(ctx, cancelling)
    [still] = sweep(ctx)
    assert not still.completed
    assert still.error is not None
    rig.clear()
    [finished] = sweep(ctx)
    assert finished.completed
    assert find_meeting(ctx, meeting.id).status is MeetingStatus.CANCELLED
    assert meeting.crm_record_id is not None
    assert rig.crm_status(meeting.crm_record_id) is MeetingStatus.CANCELLED
    assert [m.method for m in outbox(store)[2:]] == ["CANCEL", "CANCEL"]
    assert sweep(ctx) == []
    assert cancel(ctx, cancelling).replayed


def test_the_sweeper_removes_the_provider_meeting_when_the_crm_refuses(
    ctx: ActionContext, rig: Any, store: Store, clock: Any
) -> None:
    request = schedule_request(ctx, rig)
    with pytest.raises(Crash):
        schedule(replace(ctx, hook=crash_at("provider.create")), request)
    assert len(rig.live()) == 1
    clock.advance(minutes=6)
    rig.fail_crm("create", "refused")
    [outcome] = sweep(ctx)
    rig.clear()
    assert not outcome.completed
    assert rig.live() == []
    assert rig.crm_uids() == []
    assert outbox(store) == []
    assert ledger_status(store, ctx, request.idempotency_key) is LedgerStatus.PENDING


# --- edit -------------------------------------------------------------------------------


def test_edit_updates_provider_and_crm_and_sends_the_update(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    later = meeting.start + timedelta(hours=3)
    result = edit(
        ctx,
        EditRequest(
            idempotency_key="k-edit",
            meeting=meeting.id,
            expected_version=meeting.version,
            start=later,
            end=later + timedelta(hours=1),
            invitees=(ZED, BOB),
        ),
    )
    assert result.meeting.start == later
    assert result.meeting.sequence == 1
    assert result.meeting.crm_record_id is not None
    assert rig.connector.get(result.meeting.crm_record_id).start == later
    assert meeting.provider_meeting_id is not None
    assert rig.provider_meeting(meeting.provider_meeting_id)["start"] == iso_z(later)
    sent = [(m.recipient, m.method, m.sequence) for m in outbox(store)[2:]]
    assert sent == [
        ("zed@client.example", "REQUEST", 1),
        ("bob@partner.example", "REQUEST", 1),
        ("amy@client.example", "CANCEL", 1),
    ]


def test_a_stale_edit_is_a_conflict_not_an_overwrite(ctx: ActionContext, rig: Any) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    first = EditRequest(idempotency_key="k-1", meeting=meeting.id, expected_version=1, subject="A")
    edit(ctx, first)
    with pytest.raises(ConflictError, match="version 2"):
        edit(ctx, replace(first, idempotency_key="k-2", subject="B"))
    assert meeting.crm_record_id is not None
    rig.touch(meeting.crm_record_id)
    with pytest.raises(ConflictError, match="changed in the CRM"):
        edit(ctx, replace(first, idempotency_key="k-3", subject="C", expected_version=2))
    assert find_meeting(ctx, meeting.id).subject == "A"


def test_a_crm_refusal_during_an_edit_puts_the_provider_back(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    request = EditRequest(
        idempotency_key="k-edit", meeting=meeting.id, expected_version=1, subject="Renamed"
    )
    rig.fail_crm("update", "refused")
    with pytest.raises(RemoteError):
        edit(ctx, request)
    rig.clear()
    assert meeting.provider_meeting_id is not None
    assert rig.provider_meeting(meeting.provider_meeting_id)["subject"] == "Quarterly review"
    assert find_meeting(ctx, meeting.id) == meeting
    assert len(outbox(store)) == 2
    assert edit(ctx, request).meeting.subject == "Renamed"


def test_editing_a_cancelled_or_deleted_meeting_is_a_clear_error(
    ctx: ActionContext, rig: Any
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id))
    request = EditRequest(idempotency_key="k-e1", meeting=meeting.id, expected_version=2, notes="x")
    with pytest.raises(ConflictError, match="is cancelled"):
        edit(ctx, request)
    delete(ctx, MeetingRequest(idempotency_key="k-delete", meeting=meeting.id))
    with pytest.raises(ConflictError, match="was deleted"):
        edit(ctx, replace(request, idempotency_key="k-e2"))
    with pytest.raises(ConflictError, match="was deleted"):
        cancel(ctx, MeetingRequest(idempotency_key="k-c2", meeting=meeting.id))


# --- cancel, delete -----------------------------------------------------------------------


def test_cancel_keeps_the_crm_record_and_cancelling_twice_sends_nothing_twice(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    assert meeting.crm_record_id is not None
    result = cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting.crm_record_id))
    assert result.meeting.status is MeetingStatus.CANCELLED
    assert rig.crm_status(meeting.crm_record_id) is MeetingStatus.CANCELLED
    assert rig.live() == []
    assert rig.provider_meeting(str(meeting.provider_meeting_id))["notified"] == (
        rig.provider_vendor == "zoom"  # Zoom tells its own invitees; GoTo cannot
    )
    cancels = [(m.recipient, m.method, m.sequence) for m in outbox(store)[2:]]
    assert cancels == [("zed@client.example", "CANCEL", 1), ("amy@client.example", "CANCEL", 1)]
    again = cancel(ctx, MeetingRequest(idempotency_key="k-cancel-2", meeting=meeting.id))
    assert again.messages == ()
    assert again.warnings == ("The meeting was already cancelled.",)
    assert len(outbox(store)) == 4


def test_a_failed_cancel_is_finished_by_a_retry(ctx: ActionContext, rig: Any, store: Store) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    request = MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id)
    rig.fail_crm("update", "unknown")
    with pytest.raises(RemoteError):
        cancel(ctx, request)
    rig.clear()
    assert find_meeting(ctx, meeting.id).status is MeetingStatus.SCHEDULED
    assert len(outbox(store)) == 2  # nobody told yet
    assert cancel(ctx, request).meeting.status is MeetingStatus.CANCELLED
    assert len(outbox(store)) == 4


def test_delete_removes_the_crm_record_and_keeps_a_tombstone(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    assert meeting.crm_record_id is not None
    result = delete(ctx, MeetingRequest(idempotency_key="k-delete", meeting=meeting.id))
    assert rig.crm_status(meeting.crm_record_id) is None
    gone = rig.provider_meeting(str(meeting.provider_meeting_id))
    assert gone["deleted"]
    assert not gone["notified"]  # our CANCEL mail is the notice
    stored = find_meeting(ctx, meeting.crm_record_id)
    assert stored.status is MeetingStatus.DELETED
    assert stored == result.meeting
    assert [m.method for m in outbox(store)[2:]] == ["CANCEL", "CANCEL"]
    repeat = delete(ctx, MeetingRequest(idempotency_key="k-delete-2", meeting=meeting.id))
    assert repeat.messages == ()
    assert len(outbox(store)) == 4


def test_deleting_a_cancelled_meeting_does_not_cancel_it_twice(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id))
    result = delete(ctx, MeetingRequest(idempotency_key="k-delete", meeting=meeting.id))
    assert result.meeting.status is MeetingStatus.DELETED
    assert result.messages == ()
    assert len(outbox(store)) == 4


# --- share, add to calendar ------------------------------------------------------------


def test_share_and_add_to_calendar(ctx: ActionContext, rig: Any) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    text = share(ctx, ViewRequest(meeting=meeting.id)).text
    assert text is not None
    assert text.startswith("Quarterly review\n")
    assert "Dial-in:" in text
    assert str(meeting.join_url) in text
    ics = add_to_calendar(ctx, ViewRequest(meeting=meeting.id)).ics
    assert ics is not None
    event = Calendar.from_ical(ics).walk("VEVENT")[0]
    assert str(event["UID"]) == meeting.uid
    assert "METHOD" not in Calendar.from_ical(ics)
    cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id))
    with pytest.raises(ConflictError, match="cancelled"):
        share(ctx, ViewRequest(meeting=meeting.id))


# --- the life cycle ------------------------------------------------------------------------


def test_life_cycle_each_invitee_sees_one_uid_and_a_rising_sequence(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    steps: list[dict[str, Any]] = [
        {"start": meeting.start + timedelta(days=1), "end": meeting.end + timedelta(days=1)},
        {"invitees": (ZED, AMY, BOB)},
        {"invitees": (ZED, BOB)},
    ]
    for number, changes in enumerate(steps):
        request = EditRequest(
            idempotency_key=f"k-edit-{number}",
            meeting=meeting.id,
            expected_version=meeting.version,
            **changes,
        )
        meeting = edit(ctx, request).meeting
    cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id))
    received: dict[str, list[Mail]] = defaultdict(list)
    for mail in outbox(store):
        received[mail.recipient].append(mail)
    assert {m.uid for mails in received.values() for m in mails} == {meeting.uid}
    for recipient, mails in received.items():
        sequences = [m.sequence for m in mails]
        assert sequences == sorted(set(sequences)), f"{recipient}: {sequences}"
        assert mails[-1].method == "CANCEL"
    amy = received["amy@client.example"]  # removed at SEQUENCE 3: not told of the cancel
    assert [(m.method, m.sequence) for m in amy] == [
        ("REQUEST", 0),
        ("REQUEST", 1),
        ("REQUEST", 2),
        ("CANCEL", 3),
    ]
    assert [m.sequence for m in received["bob@partner.example"]] == [2, 3, 4]
    assert [m.sequence for m in received["zed@client.example"]] == [0, 1, 2, 3, 4]


# --- mail delivery ------------------------------------------------------------------------


def test_smtp_down_does_not_fail_the_action_and_the_mail_goes_out_once_it_is_back(
    ctx: ActionContext,
    rig: Any,
    store: Store,
    clock: Any,
    smtp_server: tuple[SmtpConfig, Any, Any],
) -> None:
    smtp, handler, controller = smtp_server
    meeting = schedule(ctx, schedule_request(ctx, rig)).meeting
    down = deliver_pending(store, smtp, clock())
    assert down.deferred
    assert not down.sent
    controller.start()
    up = deliver_pending(store, smtp, clock.advance(minutes=5))
    assert len(up.sent) == 2
    assert deliver_pending(store, smtp, clock.advance(hours=1)).attempted == 0
    uids = {str(_event(email.message_from_bytes(raw))["UID"]) for raw in handler.received}
    assert len(handler.received) == 2
    assert uids == {meeting.uid}
