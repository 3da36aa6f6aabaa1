"""Edit, cancel and delete act at the provider the meeting was scheduled on, not at the
context's default: a GoTo meeting changed from a context whose default is Zoom is changed
at GoTo, and Zoom gets no call. A meeting whose provider is not configured any more: an
edit of what the provider holds is refused before any change; cancel and delete still
change the CRM and tell invitees, warning that the provider meeting is left.

One sandbox serves HubSpot, Zoom and GoTo; the acting context is the web's or the CLI's
(Zoom, the default, for new meetings; every configured provider known by name).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.actions import (
    ActionContext,
    ActionLedger,
    EditRequest,
    LedgerStatus,
    MeetingRequest,
    cancel,
    delete,
    edit,
    find_meeting,
    schedule,
    sweep,
)
from crm_meetings.conferencing._values import iso_z
from crm_meetings.errors import ConfigurationError, RemoteError
from crm_meetings.model import Meeting, MeetingStatus
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import Store

HERE = Path(__file__).parent
rigs = load_module(HERE / "conftest.py")
suite = load_module(HERE / "test_actions.py")


@dataclass
class World:
    zoom: Any  # a Rig: HubSpot with Zoom, the default provider
    goto: Any  # a Rig on the same sandbox: HubSpot with GoTo
    sandbox: Sandbox
    ctx: ActionContext  # Zoom for new meetings; Zoom and GoTo known by name
    on_goto: ActionContext  # the rep who scheduled on GoTo (`--provider goto`)

    def zoom_calls(self) -> int:
        return self.sandbox.calls.count("zoom")

    def only_zoom(self) -> ActionContext:
        """The same deployment once [goto] is disabled."""
        return replace(self.ctx, providers={"zoom": self.zoom.provider})


@pytest.fixture
def world(zoom_and_goto: Any, store: Store, clock: Callable[[], Any]) -> World:
    box, zoom, goto = zoom_and_goto
    ids = itertools.count(1)
    ctx = ActionContext(
        store=store,
        connector=zoom.connector,
        provider=zoom.provider,
        providers={"zoom": zoom.provider, "goto": goto.provider},
        actor=rigs.ORGANIZER,
        clock=clock,
        id_factory=lambda: f"act{next(ids):04d}",
    )
    return World(zoom, goto, box, ctx, replace(ctx, provider=goto.provider))


def on_goto(world: World) -> Meeting:
    meeting = schedule(world.on_goto, suite.schedule_request(world.on_goto, world.goto)).meeting
    assert meeting.provider == "goto"
    assert world.goto.live() == [meeting.provider_meeting_id]
    return meeting


def moved(meeting: Meeting, key: str = "k-edit", **changes: Any) -> EditRequest:
    later = meeting.start + timedelta(hours=3)
    fields = {"start": later, "end": later + timedelta(hours=1), **changes}
    return EditRequest(
        idempotency_key=key, meeting=meeting.id, expected_version=meeting.version, **fields
    )


def methods(store: Store) -> list[tuple[str, str]]:
    return [(m.method, m.recipient) for m in suite.outbox(store)]


# --- at the meeting's provider -------------------------------------------------------------


def test_an_edit_of_a_goto_meeting_changes_it_at_goto_not_at_the_default(
    world: World, store: Store
) -> None:
    meeting = on_goto(world)
    zoom_calls = world.zoom_calls()
    request = moved(meeting, subject="Quarterly review (moved)")
    result = edit(world.ctx, request)
    at_goto = world.goto.provider_meeting(str(meeting.provider_meeting_id))
    assert at_goto["start"] == iso_z(request.start)
    assert at_goto["subject"] == "Quarterly review (moved)"
    assert result.meeting.provider == "goto"
    assert result.done == ("provider.update", "crm.update", "store.save", "mail.queue")
    assert world.zoom_calls() == zoom_calls, "Zoom got no call"
    assert world.zoom.provider_ids() == []


@pytest.mark.parametrize("action", ["cancel", "delete"])
def test_cancel_and_delete_of_a_goto_meeting_remove_it_at_goto(
    world: World, store: Store, action: str
) -> None:
    meeting = on_goto(world)
    zoom_calls = world.zoom_calls()
    act = cancel if action == "cancel" else delete
    result = act(world.ctx, MeetingRequest(idempotency_key="k-end", meeting=meeting.id))
    assert world.goto.live() == []
    assert world.goto.provider_meeting(str(meeting.provider_meeting_id))["deleted"]
    assert f"provider.{action}" in result.done
    assert result.warnings == ()
    status = MeetingStatus.CANCELLED if action == "cancel" else MeetingStatus.DELETED
    assert result.meeting.status is status
    assert world.zoom_calls() == zoom_calls, "Zoom got no call"
    cancels = [m for m in methods(store) if m[0] == "CANCEL"]
    assert sorted(cancels) == [("CANCEL", suite.AMY.email), ("CANCEL", suite.ZED.email)]


def test_a_crm_refusal_puts_the_goto_meeting_back_at_goto(world: World, store: Store) -> None:
    meeting = on_goto(world)
    pid = str(meeting.provider_meeting_id)
    before = world.goto.provider_meeting(pid)["start"]
    zoom_calls = world.zoom_calls()
    world.goto.fail_crm("update", "refused")
    with pytest.raises(RemoteError):
        edit(world.ctx, moved(meeting))
    world.goto.clear()
    assert world.goto.provider_meeting(pid)["start"] == before, "the undo ran at GoTo"
    assert world.zoom_calls() == zoom_calls


@pytest.mark.parametrize("boundary", ["claimed", "provider.create"])
def test_a_schedule_retried_from_a_zoom_default_context_finishes_on_goto(
    world: World, store: Store, clock: Any, boundary: str
) -> None:
    """The rep scheduled on GoTo and the attempt died; the retry with the same key from a
    context whose default is Zoom creates (or finds) the meeting at GoTo."""
    request = suite.schedule_request(world.on_goto, world.goto)
    with pytest.raises(suite.Crash):
        schedule(replace(world.on_goto, hook=suite.crash_at(boundary)), request)
    clock.advance(minutes=6)  # the crashed attempt's lease ran out
    result = schedule(world.ctx, request)
    assert result.meeting.provider == "goto"
    assert world.goto.live() == [result.meeting.provider_meeting_id]
    assert world.zoom.provider_ids() == []


def test_a_sweep_of_a_cancel_saved_before_origins_cancels_at_the_meeting_provider(
    world: World, store: Store, clock: Any
) -> None:
    """A state from before ``origin`` was kept is finished with the sweeper's context, and
    its provider step still acts at the meeting's own provider."""
    meeting = on_goto(world)
    key = "k-old-cancel"
    with pytest.raises(suite.Crash):
        cancel(
            replace(world.ctx, hook=suite.crash_at("crm.update")),
            MeetingRequest(idempotency_key=key, meeting=meeting.id),
        )
    with store.transaction() as uow:
        ledger = uow.repository(ActionLedger)
        entry = ledger.find(world.ctx.org_id, key)
        assert entry is not None
        assert entry.state["origin"]["provider"] == "goto", "the meeting's, not the default"
        ledger.progress(
            world.ctx.org_id, key, {k: v for k, v in entry.state.items() if k != "origin"}
        )
    clock.advance(minutes=6)
    zoom_calls = world.zoom_calls()
    [outcome] = sweep(world.ctx)
    assert outcome.completed, outcome.error
    assert world.goto.live() == []
    assert world.zoom_calls() == zoom_calls


# --- a provider not configured any more ----------------------------------------------------


def test_an_edit_of_a_meeting_whose_provider_is_gone_is_refused_before_any_change(
    world: World, store: Store
) -> None:
    meeting = on_goto(world)
    pid = str(meeting.provider_meeting_id)
    at_goto = dict(world.goto.provider_meeting(pid))
    queued = methods(store)
    calls = {v: world.sandbox.calls.count(v) for v in ("zoom", "goto")}
    ctx = world.only_zoom()
    with pytest.raises(ConfigurationError) as refused:
        edit(ctx, moved(meeting))
    message = f"{refused.value.message} {refused.value.hint}"
    for said in (meeting.id, "'goto'", pid, "not configured here (configured: zoom)",
                 "nothing was changed", "Enable [goto] again"):  # fmt: skip
        assert said in message
    assert refused.value.key == "goto.enabled"
    # nothing anywhere: no key claimed, no provider called (the CRM was only read)
    assert suite.ledger_status(store, ctx, "k-edit") is None
    assert {v: world.sandbox.calls.count(v) for v in ("zoom", "goto")} == calls
    assert dict(world.goto.provider_meeting(pid)) == at_goto
    assert find_meeting(ctx, meeting.id).version == meeting.version
    assert methods(store) == queued


def test_an_edit_the_provider_does_not_hold_goes_ahead_without_it(
    world: World, store: Store
) -> None:
    """Notes and location live in the CRM and our store only: no provider is needed."""
    meeting = on_goto(world)
    request = EditRequest(
        idempotency_key="k-notes",
        meeting=meeting.id,
        expected_version=meeting.version,
        location="Room 4",
    )
    result = edit(world.only_zoom(), request)
    assert result.meeting.location == "Room 4"
    assert "provider.update" not in result.done
    assert result.warnings == ()


@pytest.mark.parametrize("action", ["cancel", "delete"])
def test_cancel_and_delete_without_the_provider_still_tell_everyone_and_warn(
    world: World, store: Store, action: str
) -> None:
    meeting = on_goto(world)
    pid = str(meeting.provider_meeting_id)
    zoom_calls = world.zoom_calls()
    act = cancel if action == "cancel" else delete
    ctx = world.only_zoom()
    result = act(ctx, MeetingRequest(idempotency_key="k-end", meeting=meeting.id))
    status = MeetingStatus.CANCELLED if action == "cancel" else MeetingStatus.DELETED
    assert result.meeting.status is status
    assert world.goto.crm_status(str(meeting.crm_record_id)) is (
        MeetingStatus.CANCELLED if action == "cancel" else None
    )
    cancels = sorted(m for m in methods(store) if m[0] == "CANCEL")
    assert cancels == [("CANCEL", suite.AMY.email), ("CANCEL", suite.ZED.email)]
    [warning] = result.warnings
    done = "cancelled" if action == "cancel" else "deleted"
    for said in (f"goto meeting {pid} could not be {done}", "'goto' is not configured",
                 "configured: zoom", "every invitee is told", f"delete meeting {pid}"):  # fmt: skip
        assert said in warning
    assert "provider.unconfigured" in result.done
    assert world.goto.live() == [pid], "the room is left, as the warning says"
    assert world.zoom_calls() == zoom_calls, "nothing was tried at the default provider"
    assert suite.ledger_status(store, ctx, "k-end") is LedgerStatus.SUCCEEDED
    assert act(ctx, MeetingRequest(idempotency_key="k-end", meeting=meeting.id)).replayed
