"""Crash anywhere, for real: the history sync and ``schedule`` run in a worker process
(forked by ``child.py``'s warm server) that is SIGKILLed at seeded points, against one
sandbox and one store this process owns; then restarted, and the final state checked.

The worker stops at every step boundary (each meeting the sync looks at, before and after
each CRM batch write; each step of an action) until told to go on. A kill point is a step
number and a delay: 0 kills the worker while it waits at that boundary; otherwise it is let
go and killed that many seconds later — anywhere inside the next step, mid-HTTP-call or
mid-transaction. ``RELIABILITY_KILL_POINTS`` (default 110) sets how many, half for each;
``RELIABILITY_SEED`` the seed (the same seed kills at the same points).
"""

from __future__ import annotations

import email
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crm_meetings.actions import ActionContext, schedule, sweep
from crm_meetings.calendar.outbox import SmtpConfig, deliver_pending
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.sandbox.testing import SandboxFactory, load_module
from crm_meetings.store import Store, upgrade

TESTS = Path(__file__).parent.parent
CHILD = Path(__file__).parent / "child.py"
KILL_POINTS = int(os.environ.get("RELIABILITY_KILL_POINTS", "110"))
SEED = int(os.environ.get("RELIABILITY_SEED", "20261123"))


sync_world = load_module(TESTS / "sync" / "test_engine.py", "reliability_sync_world")
providers = load_module(TESTS / "conferencing" / "conftest.py")

_SESSION_FIELD = {
    "salesforce": lambda row: row["Provider_Session_Id__c"],
    "zoho": lambda row: row["Provider_Session_Id"],
    "hubspot": lambda row: row["properties"]["crm_meetings_session_id"],
}


def session_key(crm: str, row: Any) -> str:
    """The provider's session id a CRM history row carries (stored as ``vendor:id``)."""
    return str(_SESSION_FIELD[crm](row)).rpartition(":")[2]


def remote(sandbox: Any, crm: str, provider: str) -> dict[str, Any]:
    """What the child needs to reach the sandbox as the harnesses do."""
    refresh = (
        sandbox.refresh_token("goto", subject=providers.SEED_ORGANIZER)
        if provider == "goto"
        else sandbox.refresh_token(provider)
    )
    return {
        "crm": crm,
        "provider": provider,
        "ca_path": str(sandbox.ca_path),
        "vendors": {
            crm: {
                "url": sandbox.url(crm),
                "token": sandbox.token(crm),
                "refresh": sandbox.refresh_token(crm),
            },
            provider: {"url": sandbox.url(provider), "token": "", "refresh": refresh},
        },
    }


@dataclass
class Outcome:
    killed: bool
    steps: list[str] = field(default_factory=list)
    done: dict[str, Any] | None = None


class Forker:
    """``child.py``'s warm server: starts once, forks one worker per run."""

    def __init__(self, workdir: Path) -> None:
        self.errors_path = workdir / "child.stderr"
        self.control, theirs = socket.socketpair()
        with self.errors_path.open("wb") as errors:
            self.server = subprocess.Popen(
                [sys.executable, str(CHILD), "serve", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=errors,
                stderr=errors,
            )
        theirs.close()
        self.replies = self.control.makefile("r", encoding="utf-8")
        assert self._reply("ready") == "", self.errors()

    def errors(self) -> str:
        return self.errors_path.read_text(encoding="utf-8", errors="replace")

    def _reply(self, word: str) -> str:
        line = self.replies.readline()
        assert line.startswith(word), (line, self.errors())
        return line[len(word) :].strip()

    def fork(self, config_path: Path) -> tuple[int, socket.socket]:
        """A worker running ``config_path``; its pid and the parent's end of its socket."""
        mine, theirs = socket.socketpair()
        socket.send_fds(self.control, [f"{config_path}\n".encode()], [theirs.fileno()])
        theirs.close()
        return int(self._reply("pid")), mine

    def wait(self) -> int:
        """Reap the last worker: its exit code (negative: the signal that ended it)."""
        self.control.sendall(b"wait\n")
        return int(self._reply("exit"))

    def close(self) -> None:
        self.replies.close()
        self.control.close()
        self.server.wait(timeout=30)


@pytest.fixture(scope="module")
def forker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forker]:
    server = Forker(tmp_path_factory.mktemp("forker"))
    try:
        yield server
    finally:
        server.close()


def run_child(
    forker: Forker, config: dict[str, Any], workdir: Path, kill_at: int | None, delay: float
) -> Outcome:
    """Run a worker; SIGKILL it at step ``kill_at`` (``delay`` seconds after letting it go)."""
    path = workdir / "child.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    outcome = Outcome(killed=False)
    pid, channel = forker.fork(path)
    killing = False
    with (
        channel,
        channel.makefile("r", encoding="utf-8") as lines,
        channel.makefile("w", encoding="utf-8") as answers,
    ):
        try:
            for line in lines:
                if line.startswith("step ") and not killing:
                    outcome.steps.append(line[5:].strip())
                    if len(outcome.steps) == kill_at:
                        if delay:
                            answers.write("go\n")
                            answers.flush()
                            _sleep(delay)
                        os.kill(pid, signal.SIGKILL)  # not reaped yet: still this worker's pid
                        killing = True
                        continue
                    answers.write("go\n")
                    answers.flush()
                elif line.startswith("done "):
                    outcome.done = json.loads(line[5:])
        except ConnectionResetError:
            # killed before it read the last "go": Linux ends a Unix socket closed with
            # unread data with a reset, not an end of file
            if not killing:
                raise
    returncode = forker.wait()
    # a kill that came after the worker had finished (its last step was short) is no kill
    outcome.killed = returncode == -signal.SIGKILL
    if not outcome.killed:
        assert returncode == 0, forker.errors()
        assert outcome.done is not None
    return outcome


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def kill_point(rng: random.Random, steps: int) -> tuple[int, float]:
    at = rng.randint(1, steps)
    return at, (0.0 if rng.random() < 0.4 else rng.uniform(0.0, 0.03))


# --- the history sync ---------------------------------------------------------------------

SYNC_RIGS = [("salesforce", "goto"), ("hubspot", "zoom"), ("zoho", "zoom")]


@pytest.fixture(params=SYNC_RIGS, ids=lambda p: f"{p[0]}-{p[1]}")
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    crm, provider = request.param
    with sync_world.built_world(crm, provider, 40, tmp_path) as built:
        yield built


def test_the_sync_killed_anywhere_then_rerun_writes_every_session_exactly_once(
    world: Any, forker: Forker, tmp_path: Path, tally: Counter[str]
) -> None:
    kills = math.ceil(KILL_POINTS / 2 / len(SYNC_RIGS))
    rng = random.Random(f"{SEED}-sync-{world.crm}")
    expected = world.expected_sessions()
    ran = sum(1 for m in world.data.meetings if m.sessions)
    config = remote(world.sandbox, world.crm, world.provider_name)
    config |= {
        "mode": "sync",
        "store_url": f"sqlite+pysqlite:///{tmp_path / 'sync.db'}",
        "organizer": sync_world.ORGANIZER,
    }
    attempt = 0

    def run(kill_at: int | None, delay: float = 0.0) -> Outcome:
        nonlocal attempt
        # a killed run keeps its lease (30 minutes): each restart comes after it ran out
        now = sync_world.NOW + timedelta(minutes=31 * attempt)
        attempt += 1
        return run_child(forker, config | {"now": now.isoformat()}, tmp_path, kill_at, delay)

    for _ in range(kills):
        # steps of a run: each meeting that ran, and 2 around the CRM batch write
        at, delay = kill_point(rng, ran + 2)
        if at == ran + 2:
            # after the last step ("crm.written") only the store's short transaction is left:
            # a delayed kill would race the worker's exit, so it dies as it reports the
            # CRM's answer (accepted by the CRM, not yet recorded in the store)
            delay = 0.0
        outcome = run(at, delay)
        assert outcome.killed, outcome.steps[-3:]
        tally["kill_points"] += 1
        in_crm = [session_key(world.crm, row) for row in world.crm_sessions()]
        duplicates = len(in_crm) - len(set(in_crm))
        tally["duplicates"] += duplicates
        assert duplicates == 0
        with world.store.transaction() as uow:
            stored = {
                s.provider_session_id
                for m in world.meetings
                for s in uow.sessions.list_for_meeting(m.id)
            }
        assert stored <= set(in_crm), "the store never records a session the CRM lacks"

    final = run(None)
    assert final.done is not None
    assert final.done["status"] == "succeeded"
    in_crm = [session_key(world.crm, row) for row in world.crm_sessions()]
    tally["duplicates"] += len(in_crm) - len(set(in_crm))
    tally["lost"] += max(0, expected - len(set(in_crm)))
    with world.store.transaction() as uow:
        stored_ids = sorted(
            s.provider_session_id
            for m in world.meetings
            for s in uow.sessions.list_for_meeting(m.id)
        )
    # as an uninterrupted run: each seeded session once in the CRM and once in the store
    assert len(in_crm) == len(set(in_crm)) == expected
    assert sorted(in_crm) == stored_ids
    again = run(None)
    assert again.done == {"status": "succeeded", "written": 0}


# --- schedule ---------------------------------------------------------------------------

actions_rigs = load_module(TESTS / "actions" / "conftest.py", "reliability_actions_rigs")
actions_suite = load_module(TESTS / "actions" / "test_actions.py", "reliability_actions_suite")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
#: each rig on a backend; PostgreSQL ones skip (or fail with CI=true) without the server
SCHEDULE_RIGS = [
    pytest.param(("salesforce-zoom", "sqlite"), id="salesforce-zoom-sqlite"),
    pytest.param(
        ("hubspot-goto", "postgres"), id="hubspot-goto-postgres", marks=pytest.mark.postgres
    ),
    pytest.param(("zoho-zoom", "sqlite"), id="zoho-zoom-sqlite"),
    pytest.param(
        ("hubspot-zoom", "postgres"), id="hubspot-zoom-postgres", marks=pytest.mark.postgres
    ),
]


class Clock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class ActionWorld:
    rig: Any
    store: Store
    url: str
    clock: Any


@pytest.fixture(params=SCHEDULE_RIGS)
def action_world(
    request: pytest.FixtureRequest,
    sandbox_factory: SandboxFactory,
) -> Iterator[ActionWorld]:
    rig_name, backend = request.param
    url: str = request.getfixturevalue(f"{backend}_url")
    crm, provider = rig_name.split("-")
    rig = actions_rigs.Rig(crm, provider, sandbox_factory([crm, provider]))
    upgrade(url)
    clock = Clock(T0)
    try:
        with Store(url, clock=clock) as store:
            yield ActionWorld(rig, store, url, clock)
    finally:
        rig.close()


def asked_of(request: Any) -> dict[str, Any]:
    """A schedule request as the child reads it from its config."""
    return {
        "key": request.idempotency_key,
        "subject": request.subject,
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "timezone": request.timezone,
        "invitees": [[i.email, i.name] for i in request.invitees],
        "related": [[r.object_type, r.record_id] for r in request.related],
        "description": request.description,
    }


def world_context(world: ActionWorld) -> tuple[ActionContext, dict[str, Any]]:
    """The rep's context in this process, and the child's config for the same world."""
    rig = world.rig
    ctx = ActionContext(
        store=world.store,
        connector=rig.connector,
        provider=rig.provider,
        actor=actions_rigs.ORGANIZER,
        clock=world.clock,
    )
    config = remote(rig.sandbox, rig.crm, rig.provider_vendor)
    actor = [ctx.actor.email, ctx.actor.name]
    config |= {"mode": "schedule", "store_url": world.url, "actor": actor}
    return ctx, config


def test_schedule_killed_anywhere_then_retried_or_swept_happens_exactly_once(
    action_world: ActionWorld,
    forker: Forker,
    tally: Counter[str],
    tmp_path: Path,
    smtp_sink: tuple[SmtpConfig, Any],
) -> None:
    rig, store, clock = action_world.rig, action_world.store, action_world.clock
    kills = math.ceil(KILL_POINTS / 2 / len(SCHEDULE_RIGS))
    rng = random.Random(f"{SEED}-schedule-{rig.name}")
    ctx, config = world_context(action_world)
    uids: list[str] = []
    orphans = 0
    for n in range(kills):
        request = actions_suite.schedule_request(ctx, rig, key=f"crash-{n}")
        request = replace(request, subject=f"{request.subject} {n}")
        asked = asked_of(request)
        # 5 boundaries: claimed, provider.create, crm.create.answered, crm.create, commit
        at, delay = kill_point(rng, 5)
        delay *= 3  # reach into the HTTP calls and the commit
        outcome = run_child(
            forker, config | {"now": clock().isoformat(), "schedule": asked}, tmp_path, at, delay
        )
        if outcome.killed:
            tally["kill_points"] += 1
        clock.advance(minutes=6)  # the killed attempt's lease runs out
        if n % 2:
            swept = sweep(ctx)
            assert len(swept) <= 1
        result = schedule(ctx, request)  # the rep's retry, same key
        uid = result.meeting.uid
        uids.append(uid)
        assert result.meeting.crm_record_id is not None

        in_crm = [m.uid for m in rig.connector.list_for_record(rig.related)]
        duplicates = len(in_crm) - len(set(in_crm))
        tally["duplicates"] += duplicates
        assert in_crm.count(uid) == 1, (outcome.steps, in_crm)
        assert result.meeting.provider_meeting_id in rig.live()
        # The documented window (actions/__init__.py, "Known windows"): killed while the
        # provider create is in flight, after the vendor made the meeting and before its
        # answer was saved, leaves that provider meeting orphaned — providers take no
        # idempotency key. Only then; anything else is a duplicate.
        orphaned = len(rig.live()) - len(uids) - orphans
        if orphaned:
            in_create = outcome.killed and outcome.steps[-1] == "claimed" and delay > 0
            assert in_create, (outcome.steps, delay, "a provider meeting made twice")
            assert orphaned == 1
            orphans += orphaned
            tally["provider_orphans"] += orphaned
        mails = [m for m in actions_suite.outbox(store) if m.uid == uid]
        assert sorted(m.recipient for m in mails) == sorted(i.email for i in request.invitees)
        assert schedule(ctx, request).replayed

    # every invitation goes out once: deliver the outbox to an SMTP sink
    smtp, sink = smtp_sink
    deliver_pending(store, smtp, clock.advance(minutes=1))
    assert deliver_pending(store, smtp, clock.advance(hours=1)).attempted == 0
    received = Counter(email.message_from_bytes(raw)["Message-ID"] for raw in sink.received)
    with store.transaction() as uow:
        queued = set(uow.session.scalars(sa.select(OutboxMessageRow.message_id)))
    lost = len(queued - set(received))
    double = sum(n - 1 for n in received.values())
    tally["lost"] += lost
    tally["double_sent"] += double
    assert len(queued) == 2 * len(uids)
    assert (lost, double) == (0, 0)


def test_a_schedule_on_no_record_killed_once_the_crm_answered_leaves_one_crm_record(
    action_world: ActionWorld, forker: Forker, tally: Counter[str], tmp_path: Path
) -> None:
    """Booking pages schedule meetings related to no CRM record. SIGKILLed after the CRM
    made the record and before its id was saved, the retry finds it by UID: no second
    create is even sent."""
    rig, clock = action_world.rig, action_world.clock
    ctx, config = world_context(action_world)
    request = replace(actions_suite.schedule_request(ctx, rig, key="crash-unrelated"), related=())
    schedule_config = config | {"now": clock().isoformat(), "schedule": asked_of(request)}
    outcome = run_child(forker, schedule_config, tmp_path, 3, 0.0)  # the third boundary, at once
    assert outcome.killed
    assert outcome.steps == ["claimed", "provider.create", "crm.create.answered"]
    tally["kill_points"] += 1
    assert rig.crm_creates() == 1
    clock.advance(minutes=6)  # the killed attempt's lease runs out
    result = schedule(ctx, request)
    assert rig.crm_creates() == 1
    duplicates = rig.crm_count(result.meeting.uid) - 1
    tally["duplicates"] += duplicates
    assert duplicates == 0
    assert rig.live() == [result.meeting.provider_meeting_id]


@pytest.mark.parametrize("action_world", [("salesforce-zoom", "sqlite")], indirect=True)
def test_delivery_killed_mid_send_loses_nothing_and_repeats_only_by_message_id(
    action_world: ActionWorld,
    forker: Forker,
    tally: Counter[str],
    tmp_path: Path,
    smtp_sink: tuple[SmtpConfig, Any],
) -> None:
    """The outbox's documented bound: a sender killed after the server took a message and
    before ``sent`` was recorded sends it again once stale — the same Message-ID, at most
    one repeat per kill; nothing is ever lost."""
    rig, store, clock = action_world.rig, action_world.store, action_world.clock
    ctx = ActionContext(
        store=store,
        connector=rig.connector,
        provider=rig.provider,
        actor=actions_rigs.ORGANIZER,
        clock=clock,
    )
    for n in range(3):
        schedule(ctx, actions_suite.schedule_request(ctx, rig, key=f"mail-{n}"))
    with store.transaction() as uow:
        queued = set(uow.session.scalars(sa.select(OutboxMessageRow.message_id)))
    assert len(queued) == 6
    rng = random.Random(f"{SEED}-deliver-{rig.name}")
    smtp, sink = smtp_sink
    kills = 0
    config = {"mode": "deliver", "store_url": action_world.url, "smtp_port": smtp.port}
    config |= {"crm": rig.crm, "provider": rig.provider_vendor}
    for _ in range(50):
        at, delay = kill_point(rng, 2 * len(queued))
        outcome = run_child(forker, config | {"now": clock().isoformat()}, tmp_path, at, delay)
        clock.advance(minutes=11)  # past stale_after: rows left in `sending` are due again
        if not outcome.killed:
            break
        kills += 1
        tally["kill_points"] += 1
    else:
        pytest.fail("the delivery never completed")
    received = Counter(email.message_from_bytes(raw)["Message-ID"] for raw in sink.received)
    lost = len(queued - set(received))
    repeats = sum(n - 1 for n in received.values())
    tally["lost"] += lost
    tally["redelivered_same_message_id"] += repeats
    assert lost == 0
    assert set(received) == queued
    assert repeats <= kills, "at most one repeat per kill, always with the same Message-ID"
