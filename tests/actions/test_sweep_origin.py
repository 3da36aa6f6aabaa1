"""The sweeper finishes a request with what the rep's attempt acted with: the conferencing
provider it used (not the deployment's default), the rep's profile and named sender; a
request whose provider is not configured any more stays pending; states saved before
these were kept sweep as they used to.

One sandbox serves HubSpot, Zoom and GoTo: the sweeper's context is the worker's (Zoom,
the default; its own sender), the rep's is another.
"""

from __future__ import annotations

import email
import email.utils
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
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
from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox import SmtpConfig, deliver_pending
from crm_meetings.conferencing import ConferencingProvider
from crm_meetings.conferencing._values import iso_z
from crm_meetings.config import load_settings
from crm_meetings.model import MeetingStatus
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import Store
from crm_meetings.sync.worker import Worker

HERE = Path(__file__).parent
ROBOT = Sender("robot@acme.example", "crm-meetings")  # the worker's [smtp] from_address


rigs = load_module(HERE / "conftest.py")
suite = load_module(HERE / "test_actions.py")
senders = load_module(HERE / "test_org_sender.py")
jobs_world = load_module(HERE.parent / "sync" / "test_jobs_world.py")


@dataclass
class World:
    zoom: Any  # a Rig: HubSpot with Zoom, the default provider
    goto: Any  # a Rig on the same sandbox: HubSpot with GoTo, the rep's choice
    sandbox: Sandbox
    sweeper: ActionContext  # the worker's context: Zoom, sending from ROBOT
    rep: ActionContext  # the rep's: GoTo, no sender named (the organizer)
    clock: Any

    def providers(self) -> dict[str, ConferencingProvider]:
        return {"zoom": self.zoom.provider, "goto": self.goto.provider}


@pytest.fixture
def world(zoom_and_goto: Any, store: Store, clock: Callable[[], Any]) -> World:
    box, zoom, goto = zoom_and_goto
    ids = itertools.count(1)
    sweeper = ActionContext(
        store=store,
        connector=zoom.connector,
        provider=zoom.provider,
        actor=rigs.ORGANIZER,
        sender=ROBOT,
        clock=clock,
        id_factory=lambda: f"act{next(ids):04d}",
    )
    rep = replace(sweeper, connector=goto.connector, provider=goto.provider, sender=None)
    return World(zoom, goto, box, sweeper, rep, clock)


def interrupted_schedule(world: World, rep: ActionContext, boundary: str) -> Any:
    """The rep's schedule, killed at ``boundary``; its lease then runs out."""
    request = suite.schedule_request(rep, world.goto)
    with pytest.raises(suite.Crash):
        schedule(replace(rep, hook=suite.crash_at(boundary)), request)
    world.clock.advance(minutes=6)
    return request


def invitation_froms(store: Store, smtp: SmtpConfig, sink: Any, clock: Any) -> set[str]:
    """The From addresses of the invitations, as the SMTP sink received them (not the
    organisation address's confirmation mail)."""
    assert deliver_pending(store, smtp, clock()).sent
    messages = [email.message_from_bytes(raw) for raw in sink.received]
    return {
        email.utils.parseaddr(message["From"])[1]
        for message in messages
        if email.utils.parseaddr(message["To"])[1] in {suite.ZED.email, suite.AMY.email}
    }


def the_meeting(ctx: ActionContext) -> Any:
    with ctx.store.transaction() as uow:
        [meeting] = uow.meetings.list_by_organizer(ctx.actor.email)
    return meeting


def change(ctx: ActionContext, action: str, meeting: Any, later: datetime) -> object:
    """``action`` on ``meeting`` (an edit moves it to ``later``)."""
    if action == "edit":
        request = EditRequest(
            idempotency_key="k-change",
            meeting=meeting.id,
            expected_version=meeting.version,
            start=later,
            end=later + timedelta(hours=1),
        )
        return edit(ctx, request)
    act = cancel if action == "cancel" else delete
    return act(ctx, MeetingRequest(idempotency_key="k-change", meeting=meeting.id))


# --- (a) the provider the rep chose -------------------------------------------------------


@pytest.mark.parametrize("boundary", ["claimed", "provider.create", "crm.create"])
def test_a_schedule_on_another_provider_is_finished_on_that_provider(
    world: World, boundary: str
) -> None:
    request = interrupted_schedule(world, world.rep, boundary)
    [outcome] = sweep(world.sweeper, world.providers())
    assert (outcome.key, outcome.completed, outcome.error) == (request.idempotency_key, True, None)
    meeting = the_meeting(world.sweeper)
    assert meeting.provider == "goto"
    assert world.goto.live() == [meeting.provider_meeting_id]
    assert world.zoom.provider_ids() == []  # nothing at the default provider
    assert world.goto.crm_uids() == [meeting.uid]
    assert schedule(world.rep, request).replayed


@pytest.mark.parametrize("action", ["edit", "cancel", "delete"])
def test_a_change_to_a_meeting_on_another_provider_is_finished_on_that_provider(
    world: World, store: Store, action: str
) -> None:
    meeting = schedule(world.rep, suite.schedule_request(world.rep, world.goto)).meeting
    pid = str(meeting.provider_meeting_id)
    later = meeting.start + timedelta(hours=3)
    # each stops after its first step, before the provider's: edit before the provider update
    # (its first step), cancel and delete once the CRM has the change
    boundary = {"edit": "claimed", "cancel": "crm.update", "delete": "crm.delete"}[action]
    rep = replace(world.rep, hook=suite.crash_at(boundary))
    with pytest.raises(suite.Crash):
        change(rep, action, meeting, later)
    world.clock.advance(minutes=6)
    [outcome] = sweep(world.sweeper, world.providers())
    assert outcome.completed, outcome.error
    at_goto = world.goto.provider_meeting(pid)
    if action == "edit":
        assert at_goto["start"] == iso_z(later)
        assert find_meeting(world.sweeper, meeting.id).start == later
    else:
        assert world.goto.live() == []
        status = MeetingStatus.CANCELLED if action == "cancel" else MeetingStatus.DELETED
        assert find_meeting(world.sweeper, meeting.id).status is status
    assert world.zoom.provider_ids() == []


# --- (b) the address the rep sent from ---------------------------------------------------


@pytest.mark.parametrize("how", ["profile", "named sender"])
def test_a_schedule_sent_from_an_organisation_address_is_finished_sending_from_it(
    world: World,
    store: Store,
    clock: Any,
    smtp_sink: tuple[SmtpConfig, Any],
    how: str,
) -> None:
    senders.configure(store, world.rep.org_id, ["rep"])
    # the web passes the signed profile; `meeting schedule --sender` names the address
    rep = (
        replace(world.rep, profile="rep")
        if how == "profile"
        else replace(world.rep, sender=Sender(senders.SALES, "Acme Sales"))
    )
    interrupted_schedule(world, rep, "crm.create")
    [outcome] = sweep(world.sweeper, world.providers())  # the sweeper has no profile
    assert outcome.completed, outcome.error
    smtp, sink = smtp_sink
    assert invitation_froms(store, smtp, sink, clock) == {senders.SALES}


# --- (c) a provider no longer configured --------------------------------------------------


def test_a_request_whose_provider_is_not_configured_stays_pending_and_says_so(
    world: World, store: Store
) -> None:
    request = interrupted_schedule(world, world.rep, "provider.create")
    key = request.idempotency_key
    only_zoom = {"zoom": world.zoom.provider}
    [outcome] = sweep(world.sweeper, only_zoom)
    assert not outcome.completed
    assert outcome.error is not None
    for said in (key, "'goto'", "not configured here (configured: zoom)", "stays pending",
                 "Enable [goto] again"):  # fmt: skip
        assert said in outcome.error
    assert suite.ledger_status(store, world.sweeper, key) is LedgerStatus.PENDING
    assert world.zoom.provider_ids() == []
    assert world.goto.crm_uids() == []
    assert suite.outbox(store) == []
    assert [o.key for o in sweep(world.sweeper)] == [key]  # ctx.provider alone: still Zoom
    # nothing was taken: once GoTo is configured again the next round finishes it there
    [finished] = sweep(world.sweeper, world.providers())
    assert finished.completed, finished.error
    assert the_meeting(world.sweeper).provider == "goto"
    assert world.zoom.provider_ids() == []


# --- (d) states saved before the origin was kept --------------------------------------------


@pytest.mark.parametrize("saved", ["before", "now"])
def test_a_state_saved_before_the_origin_was_kept_sweeps_as_before(
    world: World,
    store: Store,
    clock: Any,
    smtp_sink: tuple[SmtpConfig, Any],
    saved: str,
) -> None:
    """The rep scheduled on Zoom, as the organizer. A state without ``origin`` is finished
    with the sweeper's context (Zoom, its ROBOT sender), as every state used to be."""
    rep = replace(world.rep, connector=world.zoom.connector, provider=world.zoom.provider)
    request = interrupted_schedule(world, rep, "provider.create")
    if saved == "before":
        with store.transaction() as uow:
            ledger = uow.repository(ActionLedger)
            entry = ledger.find(rep.org_id, request.idempotency_key)
            assert entry is not None
            assert entry.state["origin"] == {"provider": "zoom", "profile": None, "sender": None}
            ledger.progress(
                rep.org_id,
                request.idempotency_key,
                {k: v for k, v in entry.state.items() if k != "origin"},
            )
    [outcome] = sweep(world.sweeper, world.providers())
    assert outcome.completed, outcome.error
    meeting = the_meeting(world.sweeper)
    assert meeting.provider == "zoom"
    assert world.zoom.live() == [meeting.provider_meeting_id]
    assert world.goto.provider_ids() == []
    smtp, sink = smtp_sink
    expected = ROBOT.address if saved == "before" else rigs.ORGANIZER.email
    assert invitation_froms(store, smtp, sink, clock) == {expected}


# --- the worker ---------------------------------------------------------------------------


def config(world: World, store_url: str, path: Path, *, goto: bool) -> Path:
    """HubSpot, Zoom (the first provider: the default) and GoTo, on the world's sandbox."""
    box, goto_url = world.sandbox, world.sandbox.url("goto")
    goto_section = f"""
[goto]
enabled = {str(goto).lower()}
base_url = "{goto_url}"
token_url = "{goto_url}/oauth/token"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token = "{box.refresh_token("goto", subject=rigs.providers.SEED_ORGANIZER)}"
ca_bundle = "{box.ca_path}"
"""
    written: Path = jobs_world.write_config(box, path, store_url, extra=goto_section)
    return written


def test_the_worker_finishes_a_schedule_on_the_provider_the_rep_used(
    world: World, store: Store, store_url: str, tmp_path: Path
) -> None:
    """``Worker.sweep`` offers every enabled provider: a GoTo schedule waits while GoTo is
    disabled, and is finished on GoTo (not Zoom, the default) once it is enabled."""
    request = interrupted_schedule(world, world.rep, "claimed")
    for goto in (False, True):
        settings = load_settings(config(world, store_url, tmp_path / "w.toml", goto=goto), env={})
        worker = Worker(settings, clock=world.clock)
        try:
            worker.sweep()
        finally:
            worker.close()
        status = suite.ledger_status(store, world.sweeper, request.idempotency_key)
        assert status is (LedgerStatus.SUCCEEDED if goto else LedgerStatus.PENDING)
    meeting = the_meeting(world.sweeper)
    assert meeting.provider == "goto"
    assert world.goto.live() == [meeting.provider_meeting_id]
    assert world.zoom.provider_ids() == []
