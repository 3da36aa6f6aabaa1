"""``crm-meetings rotation …``: meeting rotations (round robin) from the command line."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from crm_meetings.calendar.imip import Sender
from crm_meetings.commands import Org, console, settings, store_url
from crm_meetings.config import Settings
from crm_meetings.errors import ConfigurationError
from crm_meetings.routing.inbound import InboundHandler, InboundListener
from crm_meetings.routing.requests import AssistantConfig, RequestStatus, TrustRepository
from crm_meetings.routing.rotation import Explanation, NewMemberPolicy, Rotation
from crm_meetings.routing.rotations import (
    Booking,
    BookingState,
    RotationRepository,
    explanation_to_json,
)
from crm_meetings.routing.trust import TrustCircle, TrustMode
from crm_meetings.store import Repository, Store

__all__ = [
    "app",
    "assistant_config",
    "rotation_json",
    "trust_app",
]

app = typer.Typer(help="Meeting rotations: who hosts the next meeting, and why.")
trust_app = typer.Typer(help="The owners' trust circles and the booking requests queue.")
app.add_typer(trust_app, name="trust")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Ref = Annotated[str, typer.Argument(help="The rotation's name or id.")]
Zone = Annotated[str, typer.Option(help="The zone whose day daily caps count.")]


R = TypeVar("R", bound=Repository)


@contextmanager
def _repository(ctx: typer.Context, cls: type[R]) -> Iterator[R]:
    with Store(store_url(settings(ctx))) as store, store.transaction() as uow:
        yield uow.repository(cls)


def rotation_json(rotation: Rotation) -> dict[str, Any]:
    return {
        "id": rotation.id,
        "name": rotation.name,
        "policy": rotation.policy.value,
        "teams": sorted(rotation.teams),
        "members": [
            {
                "email": m.email,
                "count": m.count,
                "available": m.available,
                "weight": m.weight,
                "daily_cap": m.daily_cap,
                "last_scheduled": m.last_scheduled.isoformat() if m.last_scheduled else None,
                "teams": sorted(m.teams),
                "direct": m.direct,
            }
            for m in rotation.members
        ],
    }


def _print_rotation(rotation: Rotation, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rotation_json(rotation), indent=2))
        return
    table = Table(title=Text(f"{rotation.name} ({rotation.id}, {rotation.policy} policy)"))
    for name in ("member", "booked", "available", "weight", "daily cap", "last scheduled", "via"):
        table.add_column(name)
    for m in rotation.members:
        via = ", ".join(sorted(m.teams)) + (" (listed)" if m.direct and m.teams else "")
        table.add_row(
            Text(m.email),
            str(m.count),
            Text("yes", style="green") if m.available else Text("no", style="red"),
            f"{m.weight:g}",
            str(m.daily_cap or "—"),
            m.last_scheduled.strftime("%Y-%m-%d %H:%M UTC") if m.last_scheduled else "never",
            Text(via or "listed"),
        )
    console.print(table)


def _print_explanation(explanation: Explanation, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        typer.echo(json.dumps({**extra, "explanation": explanation_to_json(explanation)}, indent=2))
        return
    for key, value in extra.items():
        console.print(Text(f"{key}: {value}"))
    console.print(Text(explanation.as_text()))


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name unique in the organisation.")],
    member: Annotated[list[str] | None, typer.Option(help="A member's e-mail (repeat).")] = None,
    team: Annotated[list[str] | None, typer.Option(help="A team whose members join.")] = None,
    policy: Annotated[
        NewMemberPolicy, typer.Option(help="When someone joins: reset every count, or calibrate.")
    ] = NewMemberPolicy.RESET,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Create a rotation."""
    with _repository(ctx, RotationRepository) as rotations:
        rotation = rotations.create(org, name, users=member or [], teams=team or [], policy=policy)
    _print_rotation(rotation, as_json)


@app.command("add-member")
def add_member(
    ctx: typer.Context,
    rotation: Ref,
    email: Annotated[str, typer.Argument(help="The new member's e-mail.")],
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Add a member; under the reset policy every count starts again at 0."""
    with _repository(ctx, RotationRepository) as rotations:
        changed = rotations.add_member(rotations.get(rotation, org_id=org).id, email)
    _print_rotation(changed, as_json)


@app.command("team")
def team(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The team.")],
    emails: Annotated[list[str], typer.Argument(help="Every member of the team.")],
    org: Org = "",
) -> None:
    """Set a team's members; every rotation listing the team follows."""
    with _repository(ctx, RotationRepository) as rotations:
        changed = rotations.set_team(org, name, emails)
    console.print(Text(f"Team {name}: {len(emails)} members; {len(changed)} rotations updated."))


@app.command("toggle")
def toggle(
    ctx: typer.Context,
    rotation: Ref,
    email: Annotated[str, typer.Argument(help="The member.")],
    available: Annotated[
        bool | None, typer.Option("--available/--unavailable", help="Set instead of flipping.")
    ] = None,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Flip a member's availability (training, holidays), or set it."""
    with _repository(ctx, RotationRepository) as rotations:
        current = rotations.get(rotation, org_id=org)
        wanted = not current.member(email).available if available is None else available
        changed = rotations.set_available(current.id, email, wanted)
    _print_rotation(changed, as_json)


@app.command("configure")
def configure(
    ctx: typer.Context,
    rotation: Ref,
    email: Annotated[str, typer.Argument(help="The member.")],
    weight: Annotated[
        float | None, typer.Option(min=0.01, help="Share of bookings, relative to 1.")
    ] = None,
    daily_cap: Annotated[int | None, typer.Option(min=1, help="At most this many a day.")] = None,
    no_cap: Annotated[bool, typer.Option("--no-cap", help="Remove the daily cap.")] = False,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Set a member's weight or daily cap."""
    with _repository(ctx, RotationRepository) as rotations:
        rotation_id = rotations.get(rotation, org_id=org).id
        changed = rotations.configure_member(
            rotation_id, email, weight=weight, daily_cap=daily_cap, clear_cap=no_cap
        )
    _print_rotation(changed, as_json)


@app.command("pick")
def pick(
    ctx: typer.Context,
    rotation: Ref,
    zone: Zone = "UTC",
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Who would host the next meeting, and why (nothing is booked)."""
    with _repository(ctx, RotationRepository) as rotations:
        found = rotations.get(rotation, org_id=org)
        explanation = rotations.suggest(found.id, rotations.clock(), zone=zone)
    _print_explanation(explanation, as_json, {"rotation": found.name})


def _print_booking(booking: Booking, as_json: bool) -> None:
    extra = {
        "meeting": booking.meeting_id,
        "booked": booking.member,
        "overridden": booking.overridden,
        "state": booking.state.value,
    }
    _print_explanation(booking.explanation, as_json, extra)


@app.command("book")
def book(
    ctx: typer.Context,
    rotation: Ref,
    meeting_id: Annotated[str, typer.Argument(help="The meeting being booked.")],
    member: Annotated[
        str | None, typer.Option(help="Book this member instead of the suggestion.")
    ] = None,
    zone: Zone = "UTC",
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Book a meeting through the rotation and count it."""
    with _repository(ctx, RotationRepository) as rotations:
        found = rotations.get(rotation, org_id=org)
        at = rotations.clock()
        booking = rotations.book(found.id, meeting_id, at, member=member, zone=zone)
    _print_booking(booking, as_json)


@app.command("unbook")
def unbook(
    ctx: typer.Context,
    meeting_id: Annotated[str, typer.Argument(help="The cancelled or deleted meeting.")],
    state: Annotated[BookingState, typer.Option(help="cancelled or deleted.")] = (
        BookingState.DELETED
    ),
    as_json: Json = False,
) -> None:
    """Give a cancelled or deleted meeting's count back."""
    with _repository(ctx, RotationRepository) as rotations:
        booking = rotations.end_booking(meeting_id, state)
    if booking is None:
        console.print(Text(f"Meeting {meeting_id} was not booked through a rotation."))
        return
    _print_booking(booking, as_json)


@app.command("show")
def show(
    ctx: typer.Context,
    rotation: Annotated[str | None, typer.Argument(help="One rotation; all if none.")] = None,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Show rotations with their members' counts and availability."""
    with _repository(ctx, RotationRepository) as rotations:
        found = [rotations.get(rotation, org_id=org)] if rotation else rotations.rotations(org)
    if as_json:
        typer.echo(json.dumps([rotation_json(r) for r in found], indent=2))
        return
    if not found:
        console.print("No rotations yet: create one with `crm-meetings rotation create`.")
    for one in found:
        _print_rotation(one, as_json=False)


# --- trust circles and requests (``rotation trust …``; the lead may mount trust_app) -----

Owner = Annotated[str, typer.Argument(help="The owner's e-mail address.")]


def _print_circle(circle: TrustCircle) -> None:
    console.print(Text(f"{circle.owner}: {circle.mode.value}"))
    for entry in sorted(circle.addresses) + sorted(circle.domains):
        console.print(Text(f"  trusts {entry}"))


@trust_app.command("signup")
def trust_signup(ctx: typer.Context, owner: Owner, org: Org = "") -> None:
    """Create an owner's circle: their own domain is trusted."""
    with _repository(ctx, TrustRepository) as trust:
        circle = trust.signup(org, owner)
    _print_circle(circle)


@trust_app.command("add")
def trust_add(
    ctx: typer.Context,
    owner: Owner,
    address: Annotated[list[str] | None, typer.Option(help="A trusted address.")] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="A trusted domain; *.x.com for its subdomains.")
    ] = None,
    mode: Annotated[TrustMode | None, typer.Option(help="restricted or everyone.")] = None,
) -> None:
    """Trust more addresses or domains, or change the mode."""
    with _repository(ctx, TrustRepository) as trust:
        circle = trust.trust(owner, addresses=address or [], domains=domain or [], mode=mode)
    _print_circle(circle)


@trust_app.command("requests")
def trust_requests(
    ctx: typer.Context,
    owner: Owner,
    every: Annotated[bool, typer.Option("--all", help="Answered ones too.")] = False,
    as_json: Json = False,
) -> None:
    """The owner's queue: requests waiting for approval (or all of them)."""
    with _repository(ctx, TrustRepository) as trust:
        found = trust.queue(owner, None if every else RequestStatus.PENDING)
    rows = [
        {"id": r.id, "from": r.requester, "name": r.requester_name, "subject": r.subject,
         "status": r.status.value, "received": r.created_at.isoformat(),
         "expires": r.expires_at.isoformat()}
        for r in found
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("No requests waiting.")
        return
    table = Table()
    for column in ("id", "from", "subject", "status", "received", "expires"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(str(row[c])) for c in ("id", "from", "subject", "status",
                                                    "received", "expires")))  # fmt: skip
    console.print(table)


def assistant_config(settings: Settings, assistant: str, *, zone: str = "UTC") -> AssistantConfig:
    """The assistant's identity and its link signing, from ``[web]``: links are signed
    with a key derived from ``web.session_secret`` and point at ``web.public_url``."""
    if settings.web.session_secret is None:
        raise ConfigurationError(
            "is not set: approval links must be signed",
            key="web.session_secret",
            hint="Set [web].session_secret (or CRM_MEETINGS_WEB__SESSION_SECRET_FILE).",
        )
    key = settings.web.session_secret.get_secret_value().encode("utf-8")
    base = settings.web.public_url or f"http://{settings.web.host}:{settings.web.port}"
    return AssistantConfig(
        sender=Sender(assistant, "Scheduling assistant"),
        secret=hmac.new(key, b"crm-meetings approval links", hashlib.sha256).digest(),
        approval_url=f"{str(base).rstrip('/')}/approvals/",
        choose_url=f"{str(base).rstrip('/')}/book/choose/",
        zone=zone,
    )


@trust_app.command("listen")
def trust_listen(
    ctx: typer.Context,
    assistant: Annotated[str, typer.Option(help="The assistant's address mail is sent to.")],
    host: Annotated[str, typer.Option(help="Where to listen.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The SMTP port.")] = 2525,
    zone: Annotated[str, typer.Option(help="Owners' working-hours zone.")] = "UTC",
    org: Org = "",
) -> None:
    """Receive e-mail requests to the assistant over SMTP until interrupted; a reply
    choosing an offered time is scheduled on the CRM and provider the settings enable."""
    from crm_meetings.web.booking import host_contexts  # the web layer imports this module
    from crm_meetings.web.wiring import Clients

    loaded = settings(ctx)
    config = assistant_config(loaded, assistant, zone=zone)
    with Store(store_url(loaded)) as store, Clients.from_settings(loaded) as clients:
        hosts = host_contexts(loaded, store, clients, clock=store.clock)
        handler = InboundHandler(store, config, org, hosts)
        listener = InboundListener(handler, host=host, port=port)
        with listener:
            console.print(Text(f"Receiving mail for {config.sender.address} on {host}:{port}."))
            threading.Event().wait()
