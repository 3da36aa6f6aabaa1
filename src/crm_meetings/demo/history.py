"""History sync on one CRM × provider: what really ran, written into the CRM.

The seeded meetings of the demo's rep on the provider are first scheduled in the CRM and
stored (what ``schedule`` leaves behind); the engine then reads the provider's history
and writes sessions and participants in batches, under a rich progress bar. A second run
writes nothing; "sync now" on a meeting that never started answers "No session exists".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from crm_meetings.demo.seeded import schedule_seeded
from crm_meetings.demo.system import DemoSystem
from crm_meetings.errors import CrmMeetingsError, NoSessionExistsError
from crm_meetings.model import CrmKind, Meeting
from crm_meetings.store import SyncRunStatus
from crm_meetings.sync.engine import HistorySync, SyncOptions, SyncReport

__all__ = ["HistoryOutcome", "report_table", "sync_history", "sync_idle_meeting"]


@dataclass(frozen=True, slots=True)
class HistoryOutcome:
    crm: str
    provider: str
    first: SyncReport
    second: SyncReport
    meetings: tuple[Meeting, ...]
    idle: tuple[str, ...]  # ids of our meetings that never started

    def to_json(self) -> dict[str, object]:
        return {
            "crm": self.crm,
            "provider": self.provider,
            "meetings_scheduled": len(self.meetings),
            "first_run": {"run_id": self.first.run_id, "status": self.first.status.value}
            | self.first.counters.to_json(),
            "second_run": {"run_id": self.second.run_id, "status": self.second.status.value}
            | self.second.counters.to_json(),
        }


def _engine(system: DemoSystem, crm: str, provider: str) -> HistorySync:
    connectors = {CrmKind(crm): system.connectors[crm]}
    options = SyncOptions(org_id=system.org(crm), first_window=timedelta(days=30))
    return HistorySync(system.store, system.providers[provider], connectors, options=options)


def _schedule_seeded(system: DemoSystem, crm: str, provider: str) -> tuple[list[Meeting], set[str]]:
    """The rep's seeded meetings on ``provider``, created in the CRM and stored; and the
    ids of those that never started."""
    organizer = system.organizer
    key = system.data.users[0].key
    seeded = [m for m in system.data.meetings if m.organizer == key and m.provider == provider]
    meetings = schedule_seeded(
        seeded,
        crm=CrmKind(crm),
        connector=system.connectors[crm],
        store=system.store,
        organizer=organizer,
        provider=provider,
        org_id=system.org(crm),
    )
    idle = {ours.id for ours, m in zip(meetings, seeded, strict=True) if not m.started}
    return meetings, idle


def sync_history(system: DemoSystem, console: Console, crm: str, provider: str) -> HistoryOutcome:
    """Schedule the seeded meetings, sync twice (the second writes nothing)."""
    meetings, idle = _schedule_seeded(system, crm, provider)
    engine = _engine(system, crm, provider)
    organizer = system.organizer.email
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"sync {organizer} ({provider} → {crm})", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        first = engine.sync_organizer(organizer, progress=advance)
    second = engine.sync_organizer(organizer)
    for name, report in (("first", first), ("second", second)):
        if report.status is not SyncRunStatus.SUCCEEDED:
            errors = "; ".join(report.counters.errors) or "no error recorded"
            raise CrmMeetingsError(f"the {name} sync run ended {report.status.value}: {errors}")
    if second.counters.sessions_written or second.counters.api_calls.get(crm):
        raise CrmMeetingsError(f"the second sync run wrote to {crm} again")
    outcome = HistoryOutcome(crm, provider, first, second, tuple(meetings), tuple(sorted(idle)))
    path = system.out / "sync-report.json"
    path.write_text(json.dumps(outcome.to_json(), indent=2) + "\n", encoding="utf-8")
    return outcome


def sync_idle_meeting(system: DemoSystem, outcome: HistoryOutcome) -> str:
    """ "Sync now" on a meeting that never started: the engine's answer."""
    if not outcome.idle:
        raise CrmMeetingsError("every seeded meeting started; none to show 'No session exists'")
    engine = _engine(system, outcome.crm, outcome.provider)
    try:
        engine.sync_meeting(outcome.idle[0])
    except NoSessionExistsError as answer:
        return str(answer)
    raise CrmMeetingsError(f"meeting {outcome.idle[0]} never started, yet the sync found sessions")


def report_table(report: SyncReport, title: str) -> Table:
    """The run report: what was written, and the API calls by vendor and endpoint."""
    counters = report.counters
    grid = Table(title=title)
    grid.add_column("what")
    grid.add_column("count", justify="right")
    for label, value in (
        ("meetings seen", counters.meetings_seen),
        ("sessions written", counters.sessions_written),
        ("participants written", counters.participants_written),
        ("unmatched provider meetings", counters.unmatched),
    ):
        grid.add_row(label, str(value))
    for vendor, endpoints in counters.api_calls.items():
        for endpoint, calls in endpoints.items():
            grid.add_row(f"{vendor}: {endpoint}", str(calls))
    grid.add_row("API calls in all", str(counters.api_calls_total))
    return grid
