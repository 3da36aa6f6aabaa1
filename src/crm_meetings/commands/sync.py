"""``crm-meetings sync``: bring sessions and participants into the CRM now; ``sync runs``.

``sync`` alone syncs every organizer the store knows on every enabled provider;
``--organizer`` one of them, ``--meeting`` one meeting ("No session exists" when it never
started, exit status 1). ``--since`` re-reads from a date without moving the checkpoint;
``--dry-run`` prints the sessions it would write and writes nothing. Each store org the
enabled CRMs live under (:func:`crm_meetings.clients.store_org`) is synced with its own
CRMs. Also runnable as ``python -m crm_meetings.commands.sync``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from crm_meetings.clients import store_org
from crm_meetings.commands import console, err_console, print_error, run_app, settings
from crm_meetings.config import Settings
from crm_meetings.connectors.base import HistoryItem
from crm_meetings.errors import ConfigurationError, CrmMeetingsError, ValidationError
from crm_meetings.store import SyncRun, SyncRunStatus
from crm_meetings.sync import engine as sync_engine
from crm_meetings.sync.jobs import (
    OrganizerOutcome,
    SyncClients,
    enabled_providers,
    org_targets,
    sync_organizers,
)

__all__ = ["app"]

app = typer.Typer(
    help="History sync: sessions and participants from Zoom / GoTo Meeting into the CRM."
)

_STATUS_STYLES = {
    SyncRunStatus.SUCCEEDED: "green",
    SyncRunStatus.PARTIAL: "yellow",
    SyncRunStatus.FAILED: "bold red",
    SyncRunStatus.RUNNING: "cyan",
}


@app.callback(invoke_without_command=True)
def sync(
    ctx: typer.Context,
    organizer: Annotated[
        str | None, typer.Option(help="Only this organizer's meetings (e-mail).")
    ] = None,
    meeting: Annotated[
        str | None, typer.Option(help="Only this meeting (crm-meetings id).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Re-read from this date or ISO time (in [sync].timezone unless it has an "
            "offset); the checkpoint does not move."
        ),
    ] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider (zoom or goto).")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Sync now: every organizer, one organizer, or one meeting."""
    if ctx.invoked_subcommand is not None:
        return
    loaded = settings(ctx)
    start = _parse_since(since, loaded.sync.timezone) if since else None
    with SyncClients(loaded) as clients:
        providers = _providers(loaded, provider)
        if meeting is not None:
            outcomes = [_sync_meeting(clients, meeting, providers, dry_run=dry_run)]
        else:
            by_org = org_targets(clients, providers, organizer=organizer)
            if not by_org:
                console.print("No organizer has meetings on an enabled provider yet.")
                return
            with _Bars(quiet=as_json) as bars:
                outcomes = [
                    outcome
                    for org, targets in by_org.items()
                    for outcome in sync_organizers(
                        clients,
                        targets,
                        clients.options(org, dry_run=dry_run),
                        kind="manual",
                        since=start,
                        progress=bars,
                    )
                ]
    _show(outcomes, dry_run=dry_run, as_json=as_json)
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


def _providers(loaded: Settings, only: str | None) -> list[str]:
    enabled = enabled_providers(loaded)
    if only is not None:
        if only not in enabled:
            raise ConfigurationError(
                f"{only} is not an enabled provider (enabled: {', '.join(enabled) or 'none'})",
                hint=f"Set [{only}] enabled = true and its credentials in crm-meetings.toml.",
            )
        return [only]
    if not enabled:
        raise ConfigurationError(
            "No conferencing provider is enabled, so there is no history to read",
            hint="Set enabled = true in [zoom] or [goto] with its credentials.",
        )
    return enabled


def _sync_meeting(
    clients: SyncClients, meeting_id: str, providers: Sequence[str], *, dry_run: bool
) -> OrganizerOutcome:
    """``--meeting``: its own provider's engine, in its CRM's store org (the engine answers
    "No session exists")."""
    with clients.store.transaction() as uow:
        stored = uow.meetings.get(meeting_id)
    name = stored.provider if stored.provider and stored.provider in providers else providers[0]
    org = store_org(clients.settings, stored.crm)
    report = clients.engine(name, clients.options(org, dry_run=dry_run)).sync_meeting(meeting_id)
    return OrganizerOutcome(name, stored.organizer.email, report, org_id=org)


def _parse_since(text: str, timezone: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            "since",
            f"{text!r} is not a date or ISO time",
            hint="Use 2026-11-01 or 2026-11-01T08:00.",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(timezone))


class _Bars:
    """One progress bar per organizer (on stderr), fed by the engine's (done, total)."""

    def __init__(self, *, quiet: bool) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("meetings"),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
        )
        self.current: TaskID | None = None

    def __call__(self, provider: str, organizer: str) -> sync_engine.Progress:
        self._finish_current()
        task = self.progress.add_task(f"{provider} {organizer}", total=None)
        self.current = task

        def update(done: int, total: int) -> None:
            self.progress.update(task, completed=done, total=total)

        return update

    def _finish_current(self) -> None:
        if self.current is not None:
            total = self.progress.tasks[self.current].total or 0
            self.progress.update(self.current, total=total, completed=total)
            self.current = None

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_current()
        self.progress.stop()


def _planned_json(items: Sequence[HistoryItem]) -> list[dict[str, Any]]:
    return [
        {
            "meeting_id": item.meeting.id,
            "subject": item.meeting.subject,
            "crm": item.meeting.crm.value,
            "crm_record_id": item.meeting.crm_record_id,
            "session_id": session.provider_session_id,
            "start": session.start.isoformat(),
            "end": session.end.isoformat(),
            "participants": len(session.participants),
        }
        for item in items
        for session in item.sessions
    ]


def _show(outcomes: Sequence[OrganizerOutcome], *, dry_run: bool, as_json: bool) -> None:
    planned = [p for o in outcomes if o.report for p in _planned_json(o.report.planned)]
    if as_json:
        body: dict[str, Any] = {"outcomes": [o.to_json() for o in outcomes]}
        if dry_run:
            body["planned"] = planned
        console.print_json(json.dumps(body))
        return
    if dry_run:
        _show_planned(planned)
    else:
        console.print(_outcomes_table(outcomes))
        reports = [o.report for o in outcomes if o.report is not None]
        sessions = sum(r.counters.sessions_written for r in reports)
        participants = sum(r.counters.participants_written for r in reports)
        failed = sum(not o.ok for o in outcomes)
        console.print(
            f"Synced {len(outcomes)} organizer(s): {sessions} session(s) with "
            f"{participants} participant(s) written; {failed} with errors."
        )
    for outcome in outcomes:
        if outcome.error:
            print_error(
                CrmMeetingsError(f"{outcome.provider} {outcome.organizer}: {outcome.error}")
            )


def _show_planned(planned: list[dict[str, Any]]) -> None:
    if not planned:
        console.print("Dry run: nothing to write; the CRM is up to date.")
        return
    table = Table(title="Dry run: sessions that would be written")
    for column in ("meeting", "subject", "CRM record", "session", "start", "end", "participants"):
        table.add_column(column, overflow="fold")
    for row in planned:
        table.add_row(
            row["meeting_id"],
            Text(row["subject"]),
            f"{row['crm']} {row['crm_record_id'] or ''}",
            row["session_id"],
            row["start"],
            row["end"],
            str(row["participants"]),
        )
    console.print(table)
    meetings = len({row["meeting_id"] for row in planned})
    participants = sum(row["participants"] for row in planned)
    console.print(
        f"Would write {len(planned)} session(s) with {participants} participant(s) "
        f"for {meetings} meeting(s); nothing was written."
    )


def _outcomes_table(outcomes: Sequence[OrganizerOutcome]) -> Table:
    """One row per organizer; an ``org`` column when the CRMs live under several orgs."""
    several = len({o.org_id for o in outcomes}) > 1
    table = Table(title="History sync")
    for column in ("org",) * several + ("provider", "organizer", "run", "status", "meetings"):
        table.add_column(column)
    table.add_column("sessions")
    for column in ("participants", "unmatched", "API calls"):
        table.add_column(column, justify="right")
    for outcome in outcomes:
        org = (Text(outcome.org_id),) * several
        report = outcome.report
        if report is None:
            status = Text("failed", style=_STATUS_STYLES[SyncRunStatus.FAILED])
            table.add_row(*org, outcome.provider, outcome.organizer, "", status, *[""] * 5)
            continue
        counters = report.counters
        table.add_row(
            *org,
            outcome.provider,
            outcome.organizer,
            str(report.run_id or ""),
            Text(report.status.value, style=_STATUS_STYLES[report.status]),
            str(counters.meetings_seen),
            str(counters.sessions_written),
            str(counters.participants_written),
            str(counters.unmatched),
            str(counters.api_calls_total),
        )
    return table


# --- runs -------------------------------------------------------------------------------


def _run_json(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "org_id": run.org_id,
        "kind": run.kind,
        "status": run.status.value,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "organizer": run.organizer,
        "meeting_id": run.meeting_id,
        "counters": run.counters.to_json(),
    }


@app.command("schedule")
def schedule(
    ctx: typer.Context,
    hour: Annotated[int | None, typer.Option(min=0, max=23, help="Hour of the day.")] = None,
    minute: Annotated[int | None, typer.Option(min=0, max=59, help="Minute.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA timezone, e.g. Europe/Paris.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show or change the nightly sync time; a running worker picks a change up within a
    round, no restart (the same choice the admin page saves)."""
    from apscheduler.jobstores.base import JobLookupError

    from crm_meetings.store import Store, preferences
    from crm_meetings.sync.jobs import settings_store_url
    from crm_meetings.sync.schedule import (
        NIGHTLY_JOB_ID,
        build_scheduler,
        nightly_trigger,
        stop_scheduler,
    )

    loaded = settings(ctx)
    url = settings_store_url(loaded)
    with Store(url) as store, store.transaction() as uow:
        saved = preferences.get_preference(uow, preferences.DEPLOYMENT, preferences.SYNC_SCHEDULE)
        when = {
            "hour": loaded.sync.hour,
            "minute": loaded.sync.minute,
            "timezone": loaded.sync.timezone,
            **(saved or {}),
        }
        changes = {"hour": hour, "minute": minute, "timezone": timezone}
        when.update({k: v for k, v in changes.items() if v is not None})
        trigger = nightly_trigger(int(when["hour"]), int(when["minute"]), str(when["timezone"]))
        if any(v is not None for v in changes.values()):
            preferences.set_preference(
                uow, preferences.DEPLOYMENT, preferences.SYNC_SCHEDULE, when, by="cli"
            )
    scheduler = build_scheduler(url, timezone=str(when["timezone"]))
    scheduler.start(paused=True)
    try:
        if any(v is not None for v in changes.values()):
            # without a worker's job yet, the worker starts with the saved time
            with contextlib.suppress(JobLookupError):
                scheduler.reschedule_job(NIGHTLY_JOB_ID, trigger=trigger)
        job = scheduler.get_job(NIGHTLY_JOB_ID)
        next_run = job.next_run_time if job is not None else None
    finally:
        stop_scheduler(scheduler)
    if next_run is None:
        next_run = trigger.get_next_fire_time(None, datetime.now(ZoneInfo(str(when["timezone"]))))
    shown = {**when, "next_run": next_run.isoformat() if next_run else None}
    if as_json:
        console.print_json(json.dumps(shown))
        return
    console.print(
        f"Nightly sync at {int(when['hour']):02d}:{int(when['minute']):02d} "
        f"{when['timezone']}; next run {shown['next_run']}."
    )


@app.command("runs")
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List recent sync runs, newest first."""
    with SyncClients(settings(ctx)) as clients, clients.store.transaction() as uow:
        recent = uow.runs.list_recent(limit)
    if as_json:
        console.print_json(json.dumps([_run_json(run) for run in recent]))
        return
    if not recent:
        console.print("No sync has run yet.")
        return
    table = Table(title="Recent sync runs")
    for column in ("id", "kind", "status", "started (UTC)", "took", "organizer / meeting"):
        table.add_column(column)
    for column in ("sessions", "participants", "unmatched", "API calls", "errors"):
        table.add_column(column, justify="right")
    for run in recent:
        counters = run.counters
        took = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f}s" if run.finished_at else ""
        )
        table.add_row(
            str(run.id),
            run.kind,
            Text(run.status.value, style=_STATUS_STYLES[run.status]),
            run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            took,
            Text(run.meeting_id or run.organizer or ""),
            str(counters.sessions_written),
            str(counters.participants_written),
            str(counters.unmatched),
            str(counters.api_calls_total),
            str(len(counters.errors)),
        )
    console.print(table)


if __name__ == "__main__":
    run_app(app)
