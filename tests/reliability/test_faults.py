"""Faults: 20 % of every vendor's answers are 429 or 5xx during a history sync and during a
meeting's whole life cycle; retrying what failed reaches the clean run's final state.

The worlds and rigs are the crash suite's (``test_crash.py``, the sync and action suites'
own); the clean life cycle's mail is what ``tests/actions``' life-cycle test expects.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from crm_meetings.actions import (
    ActionContext,
    ActionResult,
    EditRequest,
    MeetingRequest,
    cancel,
    edit,
    schedule,
)
from crm_meetings.errors import RemoteError
from crm_meetings.model import MeetingStatus
from crm_meetings.sandbox.base import FaultPlan
from crm_meetings.sandbox.testing import SandboxFactory
from crm_meetings.store import Store, SyncRunStatus, upgrade


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


crash = _load(Path(__file__).parent / "test_crash.py", "reliability_faults_crash")
#: 10 % 429 + 10 % 503 at random, and the first call fails for sure (a sync makes few CRM
#: calls, so chance alone might spare the CRM)
FLAKY = FaultPlan(rate_limited=0.1, server_error=0.1, retry_after=0.01, fail_next=1)
T = TypeVar("T")
FAULTED = {429, 500, 502, 503, 504}


def faulted(sandbox: Any, vendor: str) -> int:
    return sum(1 for call in sandbox.calls.calls(vendor) if call.status in FAULTED)


def until_done(attempt: Callable[[], T], tally: Counter[str], tries: int = 30) -> T:
    """What a rep (or the worker) does: try again after a failure, same request."""
    for _ in range(tries - 1):
        try:
            return attempt()
        except RemoteError:
            tally["fault_retries"] += 1
    return attempt()


@pytest.mark.parametrize(
    ("crm", "provider"), [("salesforce", "zoom"), ("hubspot", "goto"), ("zoho", "goto")]
)
def test_a_sync_under_twenty_percent_faults_reaches_the_clean_state(
    crm: str, provider: str, tmp_path: Path, tally: Counter[str]
) -> None:
    with crash.sync_world.built_world(crm, provider, 30, tmp_path) as world:
        for vendor in (crm, provider):
            world.sandbox.faults.set(vendor, FLAKY)

        def run() -> Any:
            report = world.engine().sync_organizer(crash.sync_world.ORGANIZER)
            if report.status is not SyncRunStatus.SUCCEEDED:
                raise RemoteError(f"partial: {report.counters.errors}")
            return report

        until_done(run, tally)
        tally["fault_runs"] += 1
        assert faulted(world.sandbox, crm)
        assert faulted(world.sandbox, provider)
        world.sandbox.faults.clear()
        in_crm = [crash.session_key(crm, row) for row in world.crm_sessions()]
        with world.store.transaction() as uow:
            stored = sorted(
                s.provider_session_id
                for m in world.meetings
                for s in uow.sessions.list_for_meeting(m.id)
            )
        tally["duplicates"] += len(in_crm) - len(set(in_crm))
        tally["lost"] += max(0, world.expected_sessions() - len(set(in_crm)))
        assert len(in_crm) == len(set(in_crm)) == world.expected_sessions()
        assert sorted(in_crm) == stored
        assert (
            world.engine().sync_organizer(crash.sync_world.ORGANIZER).counters.sessions_written == 0
        )


@pytest.fixture(params=["salesforce-zoom", "hubspot-goto", "zoho-zoom"])
def faulty(
    request: pytest.FixtureRequest, sandbox_factory: SandboxFactory, sqlite_url: str
) -> Iterator[tuple[Any, ActionContext, Store]]:
    crm, provider = request.param.split("-")
    rig = crash.actions_rigs.Rig(crm, provider, sandbox_factory([crm, provider]))
    upgrade(sqlite_url)
    clock = crash.Clock(crash.T0)
    numbers = iter(range(1, 10**6))
    try:
        with Store(sqlite_url, clock=clock) as store:
            ctx = ActionContext(
                store=store,
                connector=rig.connector,
                provider=rig.provider,
                actor=crash.actions_rigs.ORGANIZER,
                clock=clock,
                id_factory=lambda: f"act{next(numbers):04d}",
            )
            yield rig, ctx, store
    finally:
        rig.close()


def test_a_life_cycle_under_twenty_percent_faults_sends_what_a_clean_one_sends(
    faulty: tuple[Any, ActionContext, Store], tally: Counter[str]
) -> None:
    rig, ctx, store = faulty
    suite = crash.actions_suite
    for vendor in (rig.crm, rig.provider_vendor):
        rig.sandbox.faults.set(vendor, FLAKY)
    request = suite.schedule_request(ctx, rig)
    meeting = until_done(lambda: schedule(ctx, request), tally).meeting
    changes: list[dict[str, Any]] = [
        {"start": meeting.start + timedelta(days=1), "end": meeting.end + timedelta(days=1)},
        {"invitees": (suite.ZED, suite.AMY, suite.BOB)},
        {"invitees": (suite.ZED, suite.BOB)},
    ]
    for number, change in enumerate(changes):
        edit_request = EditRequest(
            idempotency_key=f"k-edit-{number}",
            meeting=meeting.id,
            expected_version=meeting.version,
            **change,
        )
        for vendor in (rig.crm, rig.provider_vendor):
            rig.sandbox.expire_tokens(vendor)  # and every access token runs out, too
        done: ActionResult = until_done(lambda r=edit_request: edit(ctx, r), tally)  # type: ignore[misc]
        meeting = done.meeting
    until_done(
        lambda: cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting.id)), tally
    )
    tally["fault_runs"] += 1
    assert faulted(rig.sandbox, rig.crm)
    assert faulted(rig.sandbox, rig.provider_vendor)
    rig.clear()

    assert rig.crm_uids() == [meeting.uid], "one CRM record"
    assert rig.crm_status(meeting.crm_record_id) is MeetingStatus.CANCELLED
    assert len(rig.provider_ids()) == 1, "one provider meeting, not one per retry"
    assert rig.live() == []
    received: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for mail in suite.outbox(store):
        assert mail.uid == meeting.uid
        received[mail.recipient].append((mail.method, mail.sequence))
    clean = {
        "amy@client.example": [("REQUEST", 0), ("REQUEST", 1), ("REQUEST", 2), ("CANCEL", 3)],
        "bob@partner.example": [("REQUEST", 2), ("REQUEST", 3), ("CANCEL", 4)],
        "zed@client.example": [
            ("REQUEST", 0), ("REQUEST", 1), ("REQUEST", 2), ("REQUEST", 3), ("CANCEL", 4)
        ],
    }  # fmt: skip
    sent = sum(len(v) for v in received.values())
    expected = sum(len(v) for v in clean.values())
    tally["double_sent"] += max(0, sent - expected)
    tally["lost"] += max(0, expected - sent)
    assert dict(received) == clean
