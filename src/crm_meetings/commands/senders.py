"""``crm-meetings senders …``: organisation sender addresses from the command line.

Confirmation codes are e-mailed through the outbox from ``[smtp].from_address``; the
worker (or ``deliver_pending``) sends them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from crm_meetings.calendar.imip import Sender
from crm_meetings.commands import Org, console, settings, store_url
from crm_meetings.errors import ConfigurationError
from crm_meetings.senders.addresses import OrgAddress, Use
from crm_meetings.senders.store import (
    SenderRepository,
    confirm_address,
)
from crm_meetings.store import Store

__all__ = ["address_json", "app"]

app = typer.Typer(help="Organisation sender addresses: add, confirm, list, delete.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Address = Annotated[str, typer.Argument(help="The address, or its id.")]


def address_json(address: OrgAddress, uses: list[Use] | None = None) -> dict[str, Any]:
    expires = address.expires_at()
    return {
        "id": address.id,
        "email": address.email,
        "display_name": address.display_name,
        "profiles": sorted(address.profiles),
        "reply_to": address.reply_to,
        "status": address.status.value,
        "code_expires_at": expires.isoformat() if expires and not address.confirmed else None,
        "uses": [{"kind": u.kind, "ref": u.ref} for u in uses or []],
    }


def _print(address: OrgAddress, as_json: bool, message: str) -> None:
    if as_json:
        typer.echo(json.dumps(address_json(address), indent=2))
    else:
        console.print(Text(message))


@contextmanager
def _senders(ctx: typer.Context) -> Iterator[SenderRepository]:
    with Store(store_url(settings(ctx))) as store, store.transaction() as uow:
        yield uow.repository(SenderRepository)


def _mail_from(ctx: typer.Context) -> Sender:
    smtp = settings(ctx).smtp
    if not smtp.from_address:
        raise ConfigurationError(
            "is not set: confirmation codes need a sender",
            key="smtp.from_address",
            hint="Set [smtp].from_address (e.g. meetings@your-firm.com) in crm-meetings.toml.",
        )
    return Sender(smtp.from_address, "crm-meetings", smtp.reply_to)


@app.command("add")
def add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The address to add (it cannot change later).")],
    name: Annotated[str, typer.Option(help="The display name recipients see.")],
    profile: Annotated[list[str], typer.Option(help="A profile allowed to send (repeat).")],
    reply_to: Annotated[str | None, typer.Option(help="Replies go here.")] = None,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Add an address; a confirmation code is e-mailed to it."""
    mail_from = _mail_from(ctx)
    with _senders(ctx) as senders:
        address = senders.add(org, email, name, profile, mail_from=mail_from, reply_to=reply_to)
    _print(address, as_json, f"Added {address.email} ({address.id}); a confirmation code is "
           "on its way to it. Enter it with `crm-meetings senders confirm`.")  # fmt: skip


@app.command("confirm")
def confirm(
    ctx: typer.Context,
    address: Address,
    code: Annotated[str, typer.Argument(help="The code from the e-mail.")],
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Confirm an address with the code it received."""
    with Store(store_url(settings(ctx))) as store:
        confirmed = confirm_address(store, org, address, code)
    _print(confirmed, as_json, f"{confirmed.email} is confirmed: it can send now.")


@app.command("resend")
def resend(ctx: typer.Context, address: Address, org: Org = "", as_json: Json = False) -> None:
    """Send a new code; the previous one stops working."""
    mail_from = _mail_from(ctx)
    with _senders(ctx) as senders:
        renewed = senders.resend(org, address, mail_from=mail_from)
    _print(renewed, as_json, f"A new code is on its way to {renewed.email}.")


@app.command("edit")
def edit(
    ctx: typer.Context,
    address: Address,
    name: Annotated[str | None, typer.Option(help="A new display name.")] = None,
    profile: Annotated[
        list[str] | None, typer.Option(help="The profiles allowed to send (replaces them).")
    ] = None,
    reply_to: Annotated[str | None, typer.Option(help="A new reply-to address.")] = None,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Change the display name, profiles or reply-to (the address itself cannot change)."""
    changes: dict[str, Any] = {"display_name": name, "profiles": profile, "reply_to": reply_to}
    with _senders(ctx) as senders:
        edited = senders.edit(org, address, **{k: v for k, v in changes.items() if v})
    _print(edited, as_json, f"Updated {edited.email}.")


@app.command("use")
def use(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="invitations, rotation or approvals.")],
    ref: Annotated[str, typer.Argument(help="default, or the rotation's id.")],
    address: Address,
    org: Org = "",
) -> None:
    """Make a confirmed address the sender for one use."""
    with _senders(ctx) as senders:
        chosen = senders.set_use(org, kind, ref, address)
    console.print(Text(f"{kind} {ref} now sends from {address} ({chosen.address_id})."))


@app.command("list")
def list_addresses(ctx: typer.Context, org: Org = "", as_json: Json = False) -> None:
    """Every address of the organisation, with its status and uses."""
    with _senders(ctx) as senders:
        found = [(a, senders.uses(org, a.id)) for a in senders.addresses(org)]
    if as_json:
        typer.echo(json.dumps([address_json(a, u) for a, u in found], indent=2))
        return
    if not found:
        console.print("No organisation addresses yet: add one with `crm-meetings senders add`.")
        return
    table = Table()
    for column in ("id", "address", "name", "profiles", "status", "used for"):
        table.add_column(column)
    for address, uses in found:
        table.add_row(
            address.id,
            Text(address.email),
            Text(address.display_name),
            Text(", ".join(sorted(address.profiles))),
            Text(address.status.value, style="green" if address.confirmed else "yellow"),
            Text(", ".join(f"{u.kind} {u.ref}" for u in uses)),
        )
    console.print(table)


@app.command("delete")
def delete(
    ctx: typer.Context,
    address: Address,
    replacement: Annotated[
        str | None, typer.Option(help="A confirmed address that takes over every use.")
    ] = None,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Delete an address; one in use needs a replacement."""
    with _senders(ctx) as senders:
        moved = senders.delete(org, address, replacement=replacement)
    if as_json:
        payload = {"deleted": address, "moved": [{"kind": u.kind, "ref": u.ref} for u in moved]}
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(Text(f"Deleted {address}; {len(moved)} uses moved to {replacement}."))
