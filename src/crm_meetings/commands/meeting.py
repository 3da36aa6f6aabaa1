"""``crm-meetings meeting …``: the actions from the command line.

``schedule``, ``edit``, ``cancel`` and ``delete`` change a meeting; ``show``,
``invitation`` and ``ics`` read one. Each names the CRM (``--crm``) and the acting user
(``--as``, or ``CRM_MEETINGS_ACTOR``); a meeting is named by its CRM record id or our id.
``--profile`` (or ``CRM_MEETINGS_PROFILE``) is the acting user's profile: invitations go
out from the organisation address that profile may use (``senders use invitations
default``), else from the organizer. ``--sender ADDRESS`` asks for one organisation address:
when the profile may not send from it, the command stops with the reason instead.
The connector and the conferencing providers are built from the settings: ``schedule``
creates the online meeting on ``--provider`` (the first enabled of ``[zoom]`` and
``[goto]`` unless told); ``edit``, ``cancel`` and ``delete`` act at the provider the
meeting was scheduled on, whichever enabled one that is. A mutating command prints
its idempotency key: repeat the command with ``--key KEY`` to finish or replay it.
``--json`` prints the action's result as JSON (``ics`` in base64) for scripts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.table import Table
from rich.text import Text

from crm_meetings.actions import (
    ActionContext,
    ActionKind,
    ActionResult,
    EditRequest,
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
)
from crm_meetings.actions.codec import meeting_to_json
from crm_meetings.calendar.imip import Sender
from crm_meetings.clients import PROVIDERS, Clients, store_org
from crm_meetings.commands import console, run_app, settings, store_url
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings
from crm_meetings.connectors.registry import build_connector
from crm_meetings.errors import ConfigurationError, ValidationError
from crm_meetings.model import Invitee, Meeting, Person, RecordRef
from crm_meetings.routing.rotations import explanation_from_json
from crm_meetings.senders.store import sender_for
from crm_meetings.store import Store

__all__ = ["app"]

app = typer.Typer(help="Schedule, edit, cancel, delete and share meetings in a CRM.")

Crm = Annotated[str, typer.Option("--crm", help="salesforce, hubspot or zoho.")]
Actor = Annotated[
    str,
    typer.Option("--as", envvar="CRM_MEETINGS_ACTOR", help="Your e-mail: who acts."),
]
Provider = Annotated[
    str | None,
    typer.Option(help="zoom, goto or none (default: the first enabled of [zoom], [goto])."),
]
Key = Annotated[
    str | None,
    typer.Option("--key", help="Idempotency key (default: a new one, printed)."),
]
Ref = Annotated[str, typer.Argument(help="The meeting: its CRM record id or our id.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Invitees = Annotated[
    list[str] | None,
    typer.Option("--invitee", help='An invitee, "Name <email>" or email (repeat).'),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar="CRM_MEETINGS_PROFILE",
        help="Your profile (role): send from the org address it may use.",
    ),
]
SenderOption = Annotated[
    str | None,
    typer.Option(
        "--sender",
        help="Send from this organisation address (needs --profile; refused if not allowed).",
    ),
]
When = Annotated[
    str | None,
    typer.Option(help="ISO 8601; without an offset it is read in --timezone."),
]


# --- building the context -------------------------------------------------------------


def _provider(loaded: Settings, clients: Clients, name: str | None) -> ConferencingProvider | None:
    """The provider new meetings are created on: ``name``, else the first enabled one."""
    if name is None:
        name = clients.default_provider or "none"
    if name == "none":
        return None
    if name not in PROVIDERS:
        raise ValidationError("provider", f"unknown provider {name!r}: use zoom, goto or none")
    if not getattr(loaded, name).enabled:
        raise ConfigurationError(
            "is false",
            key=f"{name}.enabled",
            hint=f"Set [{name}] enabled = true and its credentials, or pass --provider none.",
        )
    return clients.provider(name)


def _chosen_sender(
    store: Store, org_id: str, profile: str | None, address: str | None
) -> Sender | None:
    """The organisation address of ``org_id`` asked for with ``--sender``, checked against
    ``profile``."""
    if address is None:
        return None
    if profile is None:
        raise ValidationError(
            "sender", "needs --profile: which profile you send as decides what you may use"
        )
    with store.transaction() as uow:
        return sender_for(uow, org_id, profile, address)


@contextmanager
def _context(
    ctx: typer.Context,
    crm: str,
    actor: str,
    provider: str | None = "none",
    *,
    profile: str | None = None,
    sender: str | None = None,
) -> Iterator[ActionContext]:
    """The action context the settings describe, in the store org of ``crm``'s connection
    (:func:`~crm_meetings.clients.store_org`): new meetings on ``provider``, every enabled
    provider known (each built when a meeting on it is changed); every client is closed
    afterwards."""
    loaded = settings(ctx)
    with ExitStack() as stack:
        store = stack.enter_context(Store(store_url(loaded)))
        connector = build_connector(crm, loaded)
        stack.callback(connector.close)
        org_id = store_org(loaded, connector.crm)
        chosen = _chosen_sender(store, org_id, profile, sender)
        clients = stack.enter_context(Clients.from_settings(loaded))
        yield ActionContext(
            store=store,
            connector=connector,
            provider=_provider(loaded, clients, provider),
            providers=clients.providers_by_name(),
            actor=Person(actor),
            profile=None if chosen is not None else profile,
            sender=chosen,
            org_id=org_id,
        )


# --- parsing --------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            "timezone", f"{name!r} is not an IANA zone, e.g. Europe/Paris"
        ) from None


def _when(value: str | None, field: str, zone: str) -> datetime | None:
    return None if value is None else _at(value, field, zone)


def _at(value: str, field: str, zone: str) -> datetime:
    """An ISO 8601 time; one without an offset is read in ``zone``."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"{value!r} is not an ISO 8601 date and time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_zone(zone))


def _invitees(values: Sequence[str] | None) -> tuple[Invitee, ...] | None:
    if values is None:
        return None
    people = []
    for value in values:
        name, address = parseaddr(value)
        if "@" not in address:
            raise ValidationError("invitee", f"{value!r} has no e-mail address")
        people.append(Invitee(address, name))
    return tuple(people)


def _related(values: Sequence[str]) -> tuple[RecordRef, ...]:
    refs = []
    for value in values:
        object_type, _, record_id = value.partition(":")
        if not object_type or not record_id:
            raise ValidationError("related", f"{value!r} is not TYPE:ID, e.g. Account:001…")
        refs.append(RecordRef(object_type, record_id))
    return tuple(refs)


# --- output ---------------------------------------------------------------------------


def _meeting_table(meeting: Meeting) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    zone = _zone(meeting.timezone)
    rows: list[tuple[str, str | None]] = [
        ("subject", meeting.subject),
        ("id", meeting.id),
        (meeting.crm.value, meeting.crm_record_id),
        ("status", meeting.status.value),
        (
            "when",
            f"{meeting.start.astimezone(zone):%Y-%m-%d %H:%M} – "
            f"{meeting.end.astimezone(zone):%H:%M} {meeting.timezone}",
        ),
        ("organizer", meeting.organizer.email),
        ("invitees", ", ".join(i.email for i in meeting.invitees) or "none"),
        ("related", ", ".join(str(r) for r in meeting.related) or None),
        ("join", meeting.join_url),
        ("sequence", str(meeting.sequence)),
        ("version", str(meeting.version)),
    ]
    for name, value in rows:
        if value:
            table.add_row(name, Text(value))
    return table


def _report(result: ActionResult, as_json: bool, key: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps({**result.to_json(), "idempotency_key": key}, indent=2))
        return
    verb = result.action.value.replace("_", " ")
    console.print(Text(f"{verb}: done" + (" (replayed)" if result.replayed else ""), "bold"))
    console.print(_meeting_table(result.meeting))
    for message in result.messages:
        queued = "queued" if message.new else "already queued"
        console.print(
            Text(f"  {message.method} #{message.sequence} to {message.recipient} ({queued})")
        )
    for warning in result.warnings:
        console.print(Text(f"  note: {warning}", "yellow"))
    booked = result.extra.get("rotation_booking")
    if booked:
        console.print(Text(f"rotation {booked['rotation']}: {booked['member']} {booked['state']}"))
        console.print(Text(explanation_from_json(booked["explanation"]).as_text(), "dim"))
    if key is not None:
        console.print(Text(f"idempotency key: {key}", "dim"))


def _key(value: str | None) -> str:
    return value or uuid.uuid4().hex


# --- commands -------------------------------------------------------------------------


@app.command("schedule")
def schedule_command(
    ctx: typer.Context,
    crm: Crm,
    actor: Actor,
    subject: Annotated[str, typer.Option(help="The meeting's subject.")],
    start: Annotated[str, typer.Option(help="ISO 8601; without an offset: in --timezone.")],
    end: Annotated[str, typer.Option(help="ISO 8601; without an offset: in --timezone.")],
    timezone: Annotated[str, typer.Option(help="The organizer's IANA zone.")] = "UTC",
    invitee: Invitees = None,
    related: Annotated[
        list[str] | None, typer.Option(help="A related record, TYPE:ID (repeat).")
    ] = None,
    description: Annotated[str, typer.Option(help="Agenda, shown to invitees.")] = "",
    location: Annotated[str, typer.Option(help="Where, besides the join link.")] = "",
    organizer: Annotated[str | None, typer.Option(help="Host (default: --as).")] = None,
    rotation: Annotated[
        str | None,
        typer.Option(help="Book through this rotation (id or name): it picks the host and counts."),
    ] = None,
    provider: Provider = None,
    profile: Profile = None,
    sender: SenderOption = None,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Create the online meeting, the CRM record and send the invitations."""
    chosen = _key(key)
    request = ScheduleRequest(
        idempotency_key=chosen,
        subject=subject,
        start=_at(start, "start", timezone),
        end=_at(end, "end", timezone),
        timezone=_zone(timezone).key,
        invitees=_invitees(invitee) or (),
        related=_related(related or ()),
        description=description,
        location=location,
        organizer=Person(organizer) if organizer else None,
        rotation=rotation,
    )
    with _context(ctx, crm, actor, provider, profile=profile, sender=sender) as context:
        _report(schedule(context, request), as_json, chosen)


@app.command("edit")
def edit_command(
    ctx: typer.Context,
    meeting: Ref,
    crm: Crm,
    actor: Actor,
    version: Annotated[int, typer.Option(help="The version you loaded (see `show`).")],
    subject: Annotated[str | None, typer.Option(help="A new subject.")] = None,
    start: When = None,
    end: When = None,
    timezone: Annotated[str | None, typer.Option(help="Zone of offset-less times.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    notes: Annotated[str | None, typer.Option(help="New internal notes.")] = None,
    location: Annotated[str | None, typer.Option(help="A new location.")] = None,
    invitee: Annotated[
        list[str] | None,
        typer.Option("--invitee", help="The whole new invitee list (repeat)."),
    ] = None,
    profile: Profile = None,
    sender: SenderOption = None,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Save and send update: the meeting's provider and the CRM get the change, invitees
    the mail."""
    chosen = _key(key)
    with _context(ctx, crm, actor, None, profile=profile, sender=sender) as context:
        zone = timezone or find_meeting(context, meeting).timezone
        request = EditRequest(
            idempotency_key=chosen,
            meeting=meeting,
            expected_version=version,
            subject=subject,
            start=_when(start, "start", zone),
            end=_when(end, "end", zone),
            description=description,
            notes=notes,
            location=location,
            invitees=_invitees(invitee),
        )
        _report(edit(context, request), as_json, chosen)


@app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    meeting: Ref,
    crm: Crm,
    actor: Actor,
    profile: Profile = None,
    sender: SenderOption = None,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Cancel: the CRM record stays (cancelled), the meeting's provider cancels its
    meeting; every invitee gets a CANCEL."""
    _act_on(cancel, ctx, meeting, crm, actor, key, as_json, (profile, sender))


@app.command("delete")
def delete_command(
    ctx: typer.Context,
    meeting: Ref,
    crm: Crm,
    actor: Actor,
    profile: Profile = None,
    sender: SenderOption = None,
    key: Key = None,
    as_json: Json = False,
) -> None:
    """Delete the CRM record and the meeting at its provider; every invitee gets a CANCEL."""
    _act_on(delete, ctx, meeting, crm, actor, key, as_json, (profile, sender))


def _act_on(
    action: Callable[[ActionContext, MeetingRequest], ActionResult],
    ctx: typer.Context,
    meeting: str,
    crm: str,
    actor: str,
    key: str | None,
    as_json: bool,
    sending: tuple[str | None, str | None] = (None, None),
) -> None:
    """Run a cancel or delete with a (printed) idempotency key and report the result;
    ``sending`` is (``--profile``, ``--sender``)."""
    chosen = _key(key)
    profile, sender = sending
    with _context(ctx, crm, actor, None, profile=profile, sender=sender) as context:
        request = MeetingRequest(idempotency_key=chosen, meeting=meeting)
        _report(action(context, request), as_json, chosen)


@app.command("show")
def show_command(
    ctx: typer.Context, meeting: Ref, crm: Crm, actor: Actor, as_json: Json = False
) -> None:
    """The meeting as crm-meetings stored it."""
    with _context(ctx, crm, actor) as context:
        found = find_meeting(context, meeting)
        context.authorize(context, found, ActionKind.SHARE)
    if as_json:
        typer.echo(json.dumps(meeting_to_json(found), indent=2))
    else:
        console.print(_meeting_table(found))


@app.command("invitation")
def invitation_command(
    ctx: typer.Context, meeting: Ref, crm: Crm, actor: Actor, as_json: Json = False
) -> None:
    """The invitation text to paste anywhere."""
    with _context(ctx, crm, actor) as context:
        result = share(context, ViewRequest(meeting=meeting))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        typer.echo(result.text or "")


@app.command("ics")
def ics_command(
    ctx: typer.Context,
    meeting: Ref,
    crm: Crm,
    actor: Actor,
    out: Annotated[Path | None, typer.Option(help="Write the .ics here (default: stdout).")] = None,
    as_json: Json = False,
) -> None:
    """The .ics file for your own calendar."""
    with _context(ctx, crm, actor) as context:
        result = add_to_calendar(context, ViewRequest(meeting=meeting))
    data = result.ics or b""
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    elif out is not None:
        out.write_bytes(data)
        console.print(Text(f"Wrote {out} ({len(data)} bytes)."))
    else:
        typer.echo(data.decode("utf-8"), nl=False)


if __name__ == "__main__":
    run_app(app)
