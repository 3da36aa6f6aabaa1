"""The history sync on each CRM x each provider, through the real clients and the sandbox."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.connectors.base import Connector
from crm_meetings.demo.seeded import schedule_seeded
from crm_meetings.errors import ConflictError, NoSessionExistsError, RemoteError
from crm_meetings.model import CrmKind, Meeting, Person
from crm_meetings.sandbox.base import FaultPlan
from crm_meetings.sandbox.seed import SeedData, SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import Store, SyncRunStatus, upgrade
from crm_meetings.sync.claims import LeaseRow
from crm_meetings.sync.engine import HistorySync, SyncOptions

TESTS = Path(__file__).parent.parent
NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
ORGANIZER = "rep0@sales.example.com"
SESSION_STATE = {
    "salesforce": "history_sessions",
    "hubspot": "sessions",
    "zoho": "history_sessions",
}
CRMS = {"salesforce": CrmKind.SALESFORCE, "hubspot": CrmKind.HUBSPOT, "zoho": CrmKind.ZOHO}


HARNESSES = {
    m.VENDOR: m for m in map(load_module, sorted((TESTS / "contract").glob("harness_*.py")))
}
PROVIDERS = load_module(TESTS / "conferencing" / "conftest.py")


@dataclasses.dataclass
class World:
    crm: str
    provider_name: str
    sandbox: Sandbox
    data: SeedData
    connector: Connector
    provider: ConferencingProvider
    store: Store
    meetings: list[Meeting]

    def engine(self, **options: Any) -> HistorySync:
        return HistorySync(
            self.store,
            self.provider,
            {CRMS[self.crm]: self.connector},
            clock=lambda: NOW,
            options=SyncOptions(first_window=timedelta(days=60), **options),
        )

    def crm_sessions(self) -> list[Any]:
        return list(self.sandbox.emulator(self.crm).state()[SESSION_STATE[self.crm]])

    def expected_sessions(self) -> int:
        return sum(len(m.sessions) for m in self.data.meetings)

    def crm_calls(self) -> int:
        return self.sandbox.calls.count(self.crm)


@contextmanager
def built_world(
    crm: str, provider_name: str, meetings: int, tmp_path: Path, *, timeout: float = 10.0
) -> Iterator[World]:
    """A sandbox with one CRM and one provider, our copy of every seeded meeting in both
    (``timeout``: the clients' read timeout)."""
    seed = SeedSpec(
        seed=11, meetings=meetings, organizers=1, records=3, started_share=0.6,
        provider=provider_name,
    )  # fmt: skip
    sandbox = Sandbox([crm, provider_name], seed=seed)
    sandbox.start()
    store_url = f"sqlite+pysqlite:///{tmp_path / 'sync.db'}"
    upgrade(store_url)
    store = Store(store_url)
    connector = HARNESSES[crm].make_connector(sandbox, timeout=timeout)
    build = PROVIDERS.build_zoom if provider_name == "zoom" else PROVIDERS.build_goto
    provider = build(sandbox, [], timeout=timeout)
    try:
        assert sandbox.data is not None
        ours = _schedule(sandbox.data, crm, provider_name, connector, store)
        yield World(crm, provider_name, sandbox, sandbox.data, connector, provider, store, ours)
    finally:
        provider.close()
        connector.close()
        store.dispose()
        sandbox.stop()


@pytest.fixture(
    params=[(crm, provider) for crm in sorted(HARNESSES) for provider in ("zoom", "goto")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    crm, provider_name = request.param
    with built_world(crm, provider_name, 10, tmp_path) as made:
        yield made


def _schedule(
    data: SeedData, crm: str, provider: str, connector: Connector, store: Store
) -> list[Meeting]:
    """Our copy of every seeded meeting, created in the CRM: what `schedule` leaves behind."""
    return schedule_seeded(
        data.meetings,
        crm=CRMS[crm],
        connector=connector,
        store=store,
        organizer=Person(ORGANIZER, "Rep Zero"),
        provider=provider,
        id_prefix=crm,
    )


def test_started_meetings_get_sessions_and_a_second_run_writes_nothing(world: World) -> None:
    expected = world.expected_sessions()
    assert expected > 0
    first = world.engine().sync_organizer(ORGANIZER)
    assert first.status is SyncRunStatus.SUCCEEDED, first.counters.errors
    assert first.counters.sessions_written == expected
    assert first.counters.unmatched == 0
    assert first.counters.participants_written == sum(
        len(s.participants) for m in world.data.meetings for s in m.sessions
    )
    assert len(world.crm_sessions()) == expected
    assert first.counters.api_calls[world.crm], "the run records its CRM calls"

    with world.store.transaction() as uow:
        for seeded, ours in zip(world.data.meetings, world.meetings, strict=True):
            stored = uow.sessions.list_for_meeting(ours.id)
            assert len(stored) == len(seeded.sessions)  # ids are the vendor's own
            for session in stored:
                assert session.participants, "participants come with each session"
        runs = uow.runs.list_recent()
    assert [r.status for r in runs] == [SyncRunStatus.SUCCEEDED]

    crm_calls = world.crm_calls()
    second = world.engine().sync_organizer(ORGANIZER)
    assert second.status is SyncRunStatus.SUCCEEDED
    assert second.counters.sessions_written == 0
    assert world.crm_calls() == crm_calls, "nothing changed: the CRM is not called"
    assert len(world.crm_sessions()) == expected


def test_never_started_meeting_answers_no_session_exists(world: World) -> None:
    idle = next(
        ours
        for seeded, ours in zip(world.data.meetings, world.meetings, strict=True)
        if not seeded.sessions
    )
    with pytest.raises(NoSessionExistsError) as info:
        world.engine().sync_meeting(idle.id)
    assert str(info.value).startswith("No session exists")


def test_sync_now_for_one_started_meeting(world: World) -> None:
    seeded, ours = next(
        (s, o) for s, o in zip(world.data.meetings, world.meetings, strict=True) if s.sessions
    )
    report = world.engine().sync_meeting(ours.id)
    assert report.status is SyncRunStatus.SUCCEEDED
    assert report.counters.sessions_written == len(seeded.sessions)
    assert len(world.crm_sessions()) == len(seeded.sessions)


def test_an_interrupted_run_resumes_to_the_same_state(world: World) -> None:
    world.sandbox.faults.set(world.crm, FaultPlan(server_error=1.0))
    with pytest.raises(RemoteError):
        world.engine().sync_organizer(ORGANIZER)
    with world.store.transaction() as uow:
        failed = uow.runs.list_recent()
        checkpoint = uow.checkpoints.get("default", world.provider_name, f"sessions:{ORGANIZER}")
    assert [r.status for r in failed] == [SyncRunStatus.FAILED]
    assert _before_every_session(world, checkpoint), "nothing the CRM refused is passed"

    world.sandbox.faults.clear()
    resumed = world.engine().sync_organizer(ORGANIZER)
    assert resumed.status is SyncRunStatus.SUCCEEDED
    assert len(world.crm_sessions()) == world.expected_sessions()
    assert world.engine().sync_organizer(ORGANIZER).counters.sessions_written == 0


def test_faults_at_twenty_percent_reach_the_same_final_state(world: World) -> None:
    flaky = FaultPlan(rate_limited=0.1, server_error=0.1, retry_after=0.01)
    world.sandbox.faults.set(world.crm, flaky)
    world.sandbox.faults.set(world.provider_name, flaky)
    for _ in range(5):
        try:
            report = world.engine().sync_organizer(ORGANIZER)
        except RemoteError:
            continue
        if report.status is SyncRunStatus.SUCCEEDED:
            break
    world.sandbox.faults.clear()
    final = world.engine().sync_organizer(ORGANIZER)
    assert final.status is SyncRunStatus.SUCCEEDED
    assert len(world.crm_sessions()) == world.expected_sessions()
    with world.store.transaction() as uow:
        stored = sum(len(uow.sessions.list_for_meeting(m.id)) for m in world.meetings)
    assert stored == world.expected_sessions()


def test_dry_run_shows_the_diff_and_writes_nothing(world: World) -> None:
    report = world.engine(dry_run=True).sync_organizer(ORGANIZER)
    assert sum(len(item.sessions) for item in report.planned) == world.expected_sessions()
    assert world.crm_sessions() == []
    with world.store.transaction() as uow:
        assert uow.runs.list_recent() == []


class Interrupted(Exception):
    """Stands for the process dying at a chosen point of a run."""


@pytest.mark.parametrize(("cut", "written_before"), [(0.25, 0), (0.5, 0), (0.9, 150)])
def test_a_run_cut_anywhere_in_several_batches_resumes_to_the_same_state(
    tmp_path: Path, cut: float, written_before: int
) -> None:
    with built_world("salesforce", "goto", 300, tmp_path) as world:
        expected = world.expected_sessions()
        assert expected > 200, "several CRM batches of 200 sessions"
        ran = sum(1 for m in world.data.meetings if m.sessions)
        stop_at = max(1, int(ran * cut))

        def die(done: int, total: int) -> None:
            if done == stop_at:
                raise Interrupted

        with pytest.raises(Interrupted):
            world.engine(batch_sessions=200).sync_organizer(ORGANIZER, progress=die)
        partial = len(world.crm_sessions())
        assert written_before <= partial < expected, "full batches are written as they fill"

        resumed = world.engine(batch_sessions=200).sync_organizer(ORGANIZER)
        assert resumed.status is SyncRunStatus.SUCCEEDED
        assert resumed.counters.sessions_written == expected - partial
        keys = [row["Provider_Session_Id__c"] for row in world.crm_sessions()]
        assert len(keys) == len(set(keys)) == expected, "every session once, none twice"
        assert world.engine().sync_organizer(ORGANIZER).counters.sessions_written == 0


def test_a_spent_api_budget_stops_cleanly_and_the_next_run_resumes(world: World) -> None:
    assert world.connector.budget().remaining is not None
    stopped = world.engine(min_budget=10**9).sync_organizer(ORGANIZER)
    assert stopped.status is SyncRunStatus.PARTIAL
    assert any("API budget" in error for error in stopped.counters.errors)
    assert world.crm_sessions() == []
    with world.store.transaction() as uow:
        cursor = uow.checkpoints.get("default", world.provider_name, f"sessions:{ORGANIZER}")
    assert _before_every_session(world, cursor), "a stopped run passes nothing unwritten"
    resumed = world.engine().sync_organizer(ORGANIZER)
    assert resumed.status is SyncRunStatus.SUCCEEDED
    assert len(world.crm_sessions()) == world.expected_sessions()


def _before_every_session(world: World, checkpoint: str | None) -> bool:
    """The checkpoint moves window by window (``SyncOptions.chunk``) as each is written:
    a run that stopped may have passed windows with nothing in them, never a session."""
    first = min(s.start for m in world.data.meetings for s in m.sessions)
    return checkpoint is None or datetime.fromisoformat(checkpoint) <= first


def _lower_bound(crm: str, data: SeedData) -> int:
    """The fewest CRM calls that write the seed's history, each kind in full batches."""
    sessions = [s for m in data.meetings for s in m.sessions]
    started = sum(1 for m in data.meetings if m.sessions)
    participants = sum(len(s.participants) for s in sessions)
    contacts = {r.contact_email for r in data.records}
    emails = {p.email for s in sessions for p in s.participants if p.email}
    links = sum(len({p.email for p in s.participants if p.email in contacts}) for s in sessions)

    def calls(count: int, limit: int) -> int:
        return -(-count // limit)

    if crm == "salesforce":  # sessions, then participants, 200 per sObject Collections call
        return calls(len(sessions), 200) + calls(participants, 200)
    if crm == "hubspot":  # schema, contacts by e-mail, outcomes, sessions, two kinds of links
        return (
            1
            + calls(len(emails), 100)
            + calls(started, 100)
            + 2 * calls(len(sessions), 100)
            + calls(links, 100)
        )
    return calls(len(sessions), 100)  # Zoho: upserts only, participants ride in the session


@pytest.mark.parametrize("chunk", [timedelta(days=30), timedelta(hours=6)], ids=["30d", "6h"])
@pytest.mark.parametrize("crm", sorted(HARNESSES))
def test_a_first_sync_makes_exactly_the_fewest_crm_calls(
    crm: str, chunk: timedelta, tmp_path: Path
) -> None:
    """Zoho upserts without reading its stored hashes first (the store already said which
    sessions are new); HubSpot looks each participant e-mail up once; no CRM pays for a
    partly filled call it could have avoided — not even where the window is read in many
    parts (a batch carries over from one part to the next)."""
    with built_world(crm, "goto", 200, tmp_path) as world:
        expected = world.expected_sessions()
        assert expected > 200, "more than one call of every kind"
        before = world.crm_calls()
        report = world.engine(chunk=chunk).sync_organizer(ORGANIZER)
        assert report.status is SyncRunStatus.SUCCEEDED, report.counters.errors
        assert report.counters.sessions_written == expected
        assert world.crm_calls() - before == _lower_bound(crm, world.data)
        assert sum(report.counters.api_calls[crm].values()) == _lower_bound(crm, world.data)
        if crm == "zoho":
            assert world.sandbox.calls.count("zoho", endpoint="*/coql") == 0


def test_hubspot_reads_each_participant_once_per_run_across_batches(tmp_path: Path) -> None:
    """Batches of 40 sessions: every batch links its sessions to contacts, but an e-mail is
    read only in the first batch that meets it (a per-batch lookup would read in each)."""
    with built_world("hubspot", "goto", 200, tmp_path) as world:
        ran = sorted(
            (m for m in world.data.meetings if m.sessions), key=lambda m: m.sessions[0].start
        )
        batches: list[list[Any]] = [[]]  # the engine's: whole meetings, at most 40 sessions
        for meeting in ran:
            if batches[-1] and len(batches[-1]) + len(meeting.sessions) > 40:
                batches.append([])
            batches[-1].extend(meeting.sessions)
        seen: set[str] = set()
        reads = 0
        for batch in batches:
            new = {p.email for s in batch for p in s.participants if p.email} - seen
            reads += -(-len(new) // 100)
            seen |= new
        assert reads < len(batches), "most batches meet no new e-mail"

        world.sandbox.calls.reset()  # scheduling upserted the invitees as contacts
        report = world.engine(batch_sessions=40).sync_organizer(ORGANIZER)
        assert report.status is SyncRunStatus.SUCCEEDED, report.counters.errors
        calls = world.sandbox.calls
        assert calls.count("hubspot", endpoint="*/batch/upsert") == len(batches)
        assert calls.count("hubspot", endpoint="*/batch/read") == reads


def test_a_zoom_sync_reads_only_participants_per_session(tmp_path: Path) -> None:
    """Zoom's report rows carry each instance's UUID, start and end: no instance list and
    no per-instance details call, one participants page per session."""
    with built_world("salesforce", "zoom", 30, tmp_path) as world:
        world.sandbox.calls.reset()  # scheduling created the Zoom meetings
        report = world.engine().sync_organizer(ORGANIZER)
        assert report.status is SyncRunStatus.SUCCEEDED, report.counters.errors
        assert report.counters.sessions_written == world.expected_sessions()
        made = world.sandbox.call_counts("zoom")
        token = made.pop(("POST", "/oauth/token"), 0)
        assert token <= 1, "the token scheduling got may still be valid"
        assert dict(made) == {
            # a 60-day first window: two report windows of one page each
            ("GET", "/v2/report/users/{userId}/meetings"): 2,
            ("GET", "/v2/report/meetings/{meetingId}/participants"): world.expected_sessions(),
        }


def test_hubspot_keeps_the_meeting_summary_over_every_run(tmp_path: Path) -> None:
    """A meeting held again after a sync: the next run writes only the new session, and the
    meeting's summary (session count, actual start and end) covers both runs' sessions."""
    with built_world("hubspot", "goto", 10, tmp_path) as world:
        assert world.engine().sync_organizer(ORGANIZER).status is SyncRunStatus.SUCCEEDED
        seeded, ours = next(
            (s, o) for s, o in zip(world.data.meetings, world.meetings, strict=True) if s.sessions
        )
        again = NOW + timedelta(hours=2)
        people = seeded.sessions[0].participants[:1]
        moved = [
            dataclasses.replace(p, join=again, leave=again + timedelta(minutes=30)) for p in people
        ]
        world.sandbox.emulator("goto").record_session(
            seeded.provider_meeting_id, again, again + timedelta(minutes=30), moved
        )
        later = HistorySync(
            world.store,
            world.provider,
            {CrmKind.HUBSPOT: world.connector},
            clock=lambda: NOW + timedelta(days=1),
            options=SyncOptions(first_window=timedelta(days=60)),
        )
        report = later.sync_organizer(ORGANIZER)
        assert report.status is SyncRunStatus.SUCCEEDED, report.counters.errors
        assert report.counters.sessions_written == 1
        (record,) = (
            m for m in world.sandbox.emulator("hubspot").state()["meetings"]
            if m["id"] == ours.crm_record_id
        )  # fmt: skip
        props = record["properties"]
        assert props["crm_meetings_session_count"] == str(len(seeded.sessions) + 1)
        assert props["hs_meeting_outcome"] == "COMPLETED"
        first = min(s.start for s in seeded.sessions)
        assert datetime.fromisoformat(props["crm_meetings_actual_start"]) == first
        end = datetime.fromisoformat(props["crm_meetings_actual_end"])
        assert end == again + timedelta(minutes=30)


@pytest.mark.parametrize("provider_name", ["zoom", "goto"])
def test_a_long_window_is_listed_and_written_part_by_part(
    provider_name: str, tmp_path: Path
) -> None:
    """Twelve-hour parts over a 60-day window: a meeting's sessions fall in several parts.
    Zoom lists each part's instances again (the HubSpot summary still counts them all, the
    earlier parts being stored); GoTo's whole-meeting read is made once per meeting."""
    with built_world("hubspot", provider_name, 12, tmp_path) as world:
        assert any(len({s.start.date() for s in m.sessions}) > 1 for m in world.data.meetings), (
            "some meeting spans parts"
        )
        world.sandbox.calls.reset()
        steps: list[tuple[int, int]] = []
        report = world.engine(chunk=timedelta(hours=12)).sync_organizer(
            ORGANIZER, progress=lambda done, total: steps.append((done, total))
        )
        assert report.status is SyncRunStatus.SUCCEEDED, report.counters.errors
        assert report.counters.sessions_written == world.expected_sessions()
        keys = [row["properties"]["crm_meetings_session_id"] for row in world.crm_sessions()]
        assert len(keys) == len(set(keys)) == world.expected_sessions()
        assert all(done <= total for done, total in steps)
        assert [done for done, _ in steps] == list(range(1, len(steps) + 1))
        assert steps[-1][0] == steps[-1][1]

        meetings = {m["id"]: m for m in world.sandbox.emulator("hubspot").state()["meetings"]}
        for seeded, ours in zip(world.data.meetings, world.meetings, strict=True):
            if seeded.sessions:
                props = meetings[ours.crm_record_id]["properties"]
                assert props["crm_meetings_session_count"] == str(len(seeded.sessions))
        if provider_name == "goto":
            started = sum(1 for m in world.data.meetings if m.sessions)
            reads = world.sandbox.calls.count("goto", endpoint="*/attendees")
            assert reads == started, "each meeting's sessions are read once, in its first part"
        with world.store.transaction() as uow:
            cursor = uow.checkpoints.get("default", provider_name, f"sessions:{ORGANIZER}")
        assert cursor == NOW.isoformat()
        again = world.engine(chunk=timedelta(hours=12)).sync_organizer(ORGANIZER)
        assert again.counters.sessions_written == 0


def test_a_run_stopped_in_a_later_part_resumes_from_the_last_written_one(
    tmp_path: Path,
) -> None:
    """Batches of 4 sessions over one-hour parts: a batch may hold the end of one part and
    the start of the next, so the checkpoint follows the last part whose sessions are all
    written, and a resumed run re-reads from there."""
    with built_world("zoho", "goto", 12, tmp_path) as world:
        ran = sum(1 for m in world.data.meetings if m.sessions)

        def die(done: int, total: int) -> None:
            if done == ran - 1:
                raise Interrupted

        engine = world.engine(chunk=timedelta(hours=1), batch_sessions=4)
        with pytest.raises(Interrupted):
            engine.sync_organizer(ORGANIZER, progress=die)
        with world.store.transaction() as uow:
            cursor = uow.checkpoints.get("default", "goto", f"sessions:{ORGANIZER}")
        assert cursor is not None, "the parts written before the stop are checkpointed"
        assert 0 < len(world.crm_sessions()) < world.expected_sessions()
        with world.store.transaction() as uow:
            stored = uow.sessions.list_for_meetings(m.id for m in world.meetings)
        waiting = [
            seeded
            for seeded, ours in zip(world.data.meetings, world.meetings, strict=True)
            if len(stored[ours.id]) < len(seeded.sessions)
        ]
        assert waiting
        assert all(
            min(s.start for s in m.sessions) >= datetime.fromisoformat(cursor) for m in waiting
        ), "the checkpoint passes no meeting with a session still to write"

        resumed = world.engine(chunk=timedelta(hours=1)).sync_organizer(ORGANIZER)
        assert resumed.status is SyncRunStatus.SUCCEEDED
        keys = [row["Provider_Session_Id"] for row in world.crm_sessions()]
        assert len(keys) == len(set(keys)) == world.expected_sessions()


def test_a_run_that_lost_its_lease_stops_between_parts(tmp_path: Path) -> None:
    """A part outlasting the lease's TTL lets another run take the organizer; this one must
    not carry on beside it."""
    with built_world("zoho", "goto", 12, tmp_path) as world:
        engine = world.engine(chunk=timedelta(hours=1))

        def taken(done: int, total: int) -> None:
            if done == 1:
                with world.store.transaction() as uow:
                    uow.session.execute(
                        sa.update(LeaseRow).values(
                            holder="another run", expires_at=datetime(2100, 1, 1, tzinfo=UTC)
                        )
                    )

        with pytest.raises(ConflictError, match="lost its lease"):
            engine.sync_organizer(ORGANIZER, progress=taken)
        keys = [row["Provider_Session_Id"] for row in world.crm_sessions()]
        assert len(keys) == len(set(keys)) < world.expected_sessions()
