"""``crm-meetings demo``: the whole system on SQLite, the sandbox and a local SMTP sink.

:data:`STEPS` follow cli.py's ``step_create_store`` and ``step_migrate`` (which leave a
migrated SQLite store in the scratch directory). They start the sandbox (Salesforce,
HubSpot, Zoho, Zoom, GoTo over HTTPS on 127.0.0.1) and an SMTP sink, run a meeting's life
on each CRM, a history sync, senders, a rotation, booking requests and the contact map,
serve the panel and the admin page (checked with one GET each; ``--serve`` keeps them up
until Ctrl-C), then stop everything. What happened is left in ``--out``:
``mail/NNN-<method>-<to>.eml`` as the sink received it, ``ics/*.ics`` as offered for
download, ``sync-report.json``.

A step that fails stops the servers before its error reaches the report, so the demo
never leaves anything running. The implementation modules are imported by the steps, so
importing this package (as cli.py does) stays cheap.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from crm_meetings.commands import DemoRun, Step, console
from crm_meetings.errors import CrmMeetingsError

if TYPE_CHECKING:
    from crm_meetings.demo.system import DemoSystem

__all__ = ["STEPS"]

#: the CRM × provider the history sync runs on
HISTORY = ("salesforce", "zoom")

_SystemStep = Callable[[DemoRun, "DemoSystem"], str]


def _with_system(body: _SystemStep) -> Step:
    """A step on the started system; if it fails, everything is stopped first."""

    @functools.wraps(body)
    def step(run: DemoRun) -> str:
        system = run.system
        if system is None:
            raise CrmMeetingsError(
                "the sandbox is not running", hint="Run step_start_sandbox first."
            )
        try:
            return body(run, system)
        except BaseException:
            system.close()
            raise

    return step


def step_start_sandbox(run: DemoRun) -> str:
    """Serve the five emulators and the SMTP sink; settings and clients as the worker has."""
    from crm_meetings.demo.system import start

    if not run.store_url:
        raise CrmMeetingsError("no store yet", hint="Run step_create_store and step_migrate.")
    run.system = system = start(run.out, run.workdir, run.store_url)
    ports = ", ".join(f"{v} {system.sandbox.url(v)}" for v in system.sandbox.vendors)
    sink = f"127.0.0.1:{system.sink.port}"
    return f"sandbox: {ports}; SMTP sink {sink}; clients built from crm-meetings.toml"


@_with_system
def step_meeting_life_cycle(run: DemoRun, system: DemoSystem) -> str:
    """Schedule, edit time, add and remove an invitee, cancel — on each CRM."""
    from crm_meetings.demo.lifecycle import PROVIDER_FOR, life_cycle, table
    from crm_meetings.demo.system import CRMS

    rows, records = [], []
    for crm in CRMS:
        meeting, done = life_cycle(system, crm)
        rows += done
        records.append(f"{crm}/{PROVIDER_FOR[crm]} {meeting.crm_record_id} {meeting.status}")
    console.print(table(rows))
    sent = sum(len(row.sent) for row in rows)
    return f"{len(rows)} actions, {sent} messages delivered; " + ", ".join(records)


@_with_system
def step_mail_and_calendar_files(run: DemoRun, system: DemoSystem) -> str:
    """Every message the sink received is in mail/, every offered .ics in ics/."""
    if len(system.sink.saved) != len(system.sink.received):
        raise CrmMeetingsError("some received messages were not written to mail/")
    kinds = Counter(path.name.split("-")[1] for path in system.sink.saved)
    where = system.out.resolve()
    summary = ", ".join(f"{n} {kind.upper()}" for kind, n in sorted(kinds.items()))
    return (
        f"{len(system.sink.saved)} messages in {where / 'mail'} ({summary}); "
        f"{len(system.ics_files)} calendars in {where / 'ics'}"
    )


@_with_system
def step_history_sync(run: DemoRun, system: DemoSystem) -> str:
    """The seeded meetings that ran, with sessions and participants, written into a CRM."""
    from crm_meetings.demo.history import report_table, sync_history

    crm, provider = HISTORY
    outcome = sync_history(system, console, crm, provider)
    console.print(report_table(outcome.first, f"Run report: history sync {provider} → {crm}"))
    first, second = outcome.first.counters, outcome.second.counters
    calls = "; ".join(
        f"{vendor}: " + ", ".join(f"{endpoint} ×{n}" for endpoint, n in endpoints.items())
        for vendor, endpoints in first.api_calls.items()
    )
    system.history = outcome
    return (
        f"{provider} → {crm}, {len(outcome.meetings)} meetings: run {outcome.first.run_id} "
        f"{outcome.first.status.value}, {first.meetings_seen} meetings seen, "
        f"{first.sessions_written} sessions and {first.participants_written} participants "
        f"written, {first.unmatched} unmatched; API calls {first.api_calls_total} ({calls}). "
        f"Second run: {second.sessions_written} sessions written, "
        f"{second.api_calls_total} provider API call(s), none to {crm}. "
        f"Full report: {(system.out / 'sync-report.json').resolve()}"
    )


@_with_system
def step_sync_now_never_started(run: DemoRun, system: DemoSystem) -> str:
    """ "Sync now" on a meeting that never started."""
    from crm_meetings.demo.history import sync_idle_meeting

    if system.history is None:
        raise CrmMeetingsError("no history sync ran", hint="Run step_history_sync first.")
    return f"meeting {system.history.idle[0]}: {sync_idle_meeting(system, system.history)}"


@_with_system
def step_organisation_address(run: DemoRun, system: DemoSystem) -> str:
    """An organisation address, confirmed with the code it was mailed, becomes the sender."""
    from crm_meetings.demo.people import confirm_org_address

    sender = confirm_org_address(system)
    return f"{sender.address} ({sender.name!r}) confirmed and used for invitations"


@_with_system
def step_rotation(run: DemoRun, system: DemoSystem) -> str:
    """A rotation assigns five meetings, each with its explanation."""
    from crm_meetings.demo.people import ROTATION_CRM, book_through_rotation, rotation_table

    booked = book_through_rotation(system)
    console.print(rotation_table(booked))
    hosts = Counter(booking.member for booking, _ in booked)
    spread = ", ".join(f"{host} ×{n}" for host, n in sorted(hosts.items()))
    away = booked[0][0].explanation.skipped
    skipped = "; ".join(f"{email} skipped ({reason})" for email, reason in away)
    sender = system.sender.address if system.sender else "the organizer"
    logged = len(system.log_on_crm().logged)
    return (
        f"{len(booked)} meetings on {ROTATION_CRM}: {spread}; {skipped}; sent from {sender}, "
        f"{logged} logged on the {ROTATION_CRM} record"
    )


@_with_system
def step_booking_requests(run: DemoRun, system: DemoSystem) -> str:
    """A trusted and an untrusted booking request."""
    from crm_meetings.demo.people import receive_requests

    got = receive_requests(system)
    trusted, untrusted = got.trusted, got.untrusted
    return (
        f"{trusted.requester} (trusted): {trusted.status.value}, {got.slots} free slots "
        f"offered; {untrusted.requester} (untrusted): {untrusted.status.value}, approval "
        f"asked of {untrusted.owner}"
    )


@_with_system
def step_contacts(run: DemoRun, system: DemoSystem) -> str:
    """My contacts and firm-wide companies, from the meetings and the synced sessions."""
    from crm_meetings.demo.people import contact_tables

    mine, companies, people, firms = contact_tables(system)
    console.print(people)
    console.print(firms)
    met = sum(1 for c in mine if c.last_met)
    return (
        f"{len(mine)} contacts of {system.organizer.email} ({met} met, {len(mine) - met} "
        f"only mailed); {len(companies)} firm-wide companies"
    )


@_with_system
def step_web_pages(run: DemoRun, system: DemoSystem) -> str:
    """The record-page panel and the admin page, served against the sandbox: each URL is
    opened once with a real GET; with ``--serve`` they stay up until Ctrl-C."""
    from crm_meetings.demo.web import serve, wait_for_interrupt

    web = serve(system)
    try:
        sizes = web.check()
        console.print(f"Web app on {web.base} (a Zoho sign-in stands in for the CRM):")
        for page, url in web.urls.items():
            console.print(f"  {page}: {url}")
        if run.serve:
            console.print("Serving until Ctrl-C (the sandbox and the SMTP sink stay up).")
            wait_for_interrupt()
    finally:
        web.stop()
    pages = ", ".join(f"{page} {web.urls[page]} (200, {n} bytes)" for page, n in sizes.items())
    detail = f"served on {web.base} with the sandbox's orgs; Zoho record {web.record}: {pages}"
    if run.serve:  # what was done on the pages: its mail goes to the sink like the rest
        report, _ = system.deliver()
        detail += f"; {len(report.sent)} message(s) queued from the pages delivered"
    return detail


@_with_system
def step_stop(run: DemoRun, system: DemoSystem) -> str:
    """Stop the servers and close every client; nothing is left running."""
    calls = Counter(call.vendor for call in system.sandbox.calls.calls())
    received = len(system.sink.received)
    system.close()
    if not system.closed:
        raise CrmMeetingsError("the sandbox is still running after stop")
    elapsed = time.monotonic() - system.started_monotonic
    by_vendor = ", ".join(f"{vendor} {n}" for vendor, n in sorted(calls.items()))
    return (
        f"stopped after {elapsed:.1f} s; {sum(calls.values())} API calls ({by_vendor}), "
        f"{received} messages received"
    )


#: the scenario, after cli.py's store steps
STEPS: list[Step] = [
    step_start_sandbox,
    step_meeting_life_cycle,
    step_mail_and_calendar_files,
    step_history_sync,
    step_sync_now_never_started,
    step_organisation_address,
    step_rotation,
    step_booking_requests,
    step_contacts,
    step_web_pages,
    step_stop,
]
