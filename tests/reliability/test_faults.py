"""Faults: 20 % of every vendor's answers are 429s, 5xx, dropped connections or timeouts
(the request carried out, its answer held past the client's read timeout) during a history
sync and during a meeting's whole life cycle, and every access token expires mid-cycle;
retrying what failed reaches the clean run's final state: nothing duplicated (a timed-out
create is found again, not made twice), nothing lost.

The worlds and rigs are the crash suite's (``test_crash.py``, the sync and action suites'
own); the clean life cycle's mail is what ``tests/actions``' life-cycle test expects.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.middleware import DROPPED, TIMED_OUT
from crm_meetings.sandbox.testing import SandboxFactory, load_module
from crm_meetings.store import Store, SyncRunStatus, upgrade

crash = load_module(Path(__file__).parent / "test_crash.py", "reliability_faults_crash")
#: the clients' read timeout in these tests; a timed-out answer is held twice as long
READ_TIMEOUT = 0.5
#: 5 % each of 429, 503, dropped connections and timeouts at random, and the first call
#: fails for sure (a sync makes few CRM calls, so chance alone might spare the CRM)
FLAKY = FaultPlan(
    rate_limited=0.05,
    server_error=0.05,
    drop=0.05,
    timeout=0.05,
    hold=2 * READ_TIMEOUT,
    retry_after=0.01,
    fail_next=1,
)
#: where each vendor creates a meeting: the first create times out for sure
CREATES = {
    **crash.actions_rigs._CREATES,
    "zoom": ("POST", "/v2/users/{userId}/meetings"),
    "goto": ("POST", "/G2M/rest/v2/meetings"),
}
T = TypeVar("T")
KINDS = {429: "rate_limited", 500: "server_error", 503: "server_error", 401: "expired_token"}
KINDS |= {DROPPED: "dropped", TIMED_OUT: "timed_out"}


def faulted(sandbox: Any, vendor: str, tally: Counter[str] | None = None) -> int:
    """The faults ``vendor``'s emulator answered, added to ``tally`` by kind."""
    kinds = [KINDS[c.status] for c in sandbox.calls.calls(vendor) if c.status in KINDS]
    if tally is not None:
        tally.update(f"fault_{kind}" for kind in kinds)
        tally["faults"] += len(kinds)
    return len(kinds)


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
    with crash.sync_world.built_world(crm, provider, 30, tmp_path, timeout=READ_TIMEOUT) as world:
        for vendor in (crm, provider):
            world.sandbox.faults.set(vendor, FLAKY)

        def run() -> Any:
            report = world.engine().sync_organizer(crash.sync_world.ORGANIZER)
            if report.status is not SyncRunStatus.SUCCEEDED:
                raise RemoteError(f"partial: {report.counters.errors}")
            return report

        until_done(run, tally)
        tally["fault_runs"] += 1
        world.sandbox.faults.clear()
        assert faulted(world.sandbox, crm, tally)
        assert faulted(world.sandbox, provider, tally)
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
    rig = crash.actions_rigs.Rig(
        crm, provider, sandbox_factory([crm, provider]), timeout=READ_TIMEOUT
    )
    upgrade(sqlite_url)
    # the rep's clock is the sandbox's (real time): GoTo lists *upcoming* meetings by it,
    # and a create whose answer was lost is looked for among them
    clock = crash.Clock(datetime.now(UTC).replace(microsecond=0))
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
        method, endpoint = CREATES[vendor]
        timing_out = dataclasses.replace(FLAKY, fail_kind=FaultKind.TIMEOUT)
        rig.sandbox.faults.set(vendor, timing_out, method=method, endpoint=endpoint)
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
    rig.clear()
    assert faulted(rig.sandbox, rig.crm, tally)
    assert faulted(rig.sandbox, rig.provider_vendor, tally)

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
