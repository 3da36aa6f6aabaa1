"""``crm-meetings contacts …``: my contacts, firm-wide contacts and companies."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from crm_meetings.commands import Org, console, settings, store_url
from crm_meetings.contacts.map import Company, CompanyFilter, CompanyType, Contact, Scope
from crm_meetings.contacts.store import ContactRepository
from crm_meetings.store import Store

__all__ = ["app"]

app = typer.Typer(help="The contact map: who the firm met or mailed, and their companies.")

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
User = Annotated[str, typer.Option(help="Your e-mail address (the firm user).")]


@contextmanager
def _contacts(ctx: typer.Context) -> Iterator[ContactRepository]:
    with Store(store_url(settings(ctx))) as store, store.transaction() as uow:
        yield uow.repository(ContactRepository)


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _contact_json(c: Contact) -> dict[str, Any]:
    return {
        "email": c.email, "name": c.name, "company": c.company_domain,
        "last_met": _when(c.last_met), "meetings_90d": c.meetings_90d,
        "known_best_by": c.known_best_by, "users": sorted(c.users),
    }  # fmt: skip


def _company_json(c: Company) -> dict[str, Any]:
    return {
        "domain": c.domain, "name": c.name, "type": c.type.value if c.type else None,
        "partner": c.partner, "contacts": list(c.contacts), "last_met": _when(c.last_met),
        "meetings_90d": c.meetings_90d, "known_best_by": c.known_best_by,
    }  # fmt: skip


def _print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(list(rows), indent=2))
        return
    if not rows:
        console.print("Nobody yet.")
        return
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text("" if row[c] is None else str(row[c])) for c in columns))
    console.print(table)


_CONTACT_COLUMNS = ("name", "email", "company", "last_met", "meetings_90d", "known_best_by")


@app.command("mine")
def mine(ctx: typer.Context, user: User, org: Org = "", as_json: Json = False) -> None:
    """People you met or mailed."""
    with _contacts(ctx) as contacts:
        found = contacts.contacts(org, user=user)
    _print_rows([_contact_json(c) for c in found], _CONTACT_COLUMNS, as_json)


@app.command("firm")
def firm(ctx: typer.Context, org: Org = "", as_json: Json = False) -> None:
    """Everyone anyone in the firm met or mailed."""
    with _contacts(ctx) as contacts:
        found = contacts.contacts(org)
    _print_rows([_contact_json(c) for c in found], _CONTACT_COLUMNS, as_json)


@app.command("companies")
def companies(
    ctx: typer.Context,
    user: User,
    type: Annotated[CompanyType | None, typer.Option(help="Only this type (a tab).")] = None,
    filter: Annotated[str | None, typer.Option(help="One of your saved filters.")] = None,
    only_mine: Annotated[bool, typer.Option("--mine", help="Only companies you met.")] = False,
    org: Org = "",
    as_json: Json = False,
) -> None:
    """Companies by e-mail domain and from the CRM, with type and partner."""
    scope = Scope.MINE if only_mine else Scope.FIRM
    with _contacts(ctx) as contacts:
        found = contacts.companies(org, user=user, scope=scope, type=type, saved=filter)
    columns = ("name", "domain", "type", "partner", "last_met", "meetings_90d", "known_best_by")
    _print_rows([_company_json(c) for c in found], columns, as_json)


@app.command("set-company")
def set_company(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(help="The company's e-mail domain.")],
    type: Annotated[
        CompanyType | None, typer.Option(help="client, referral_source, prospect.")
    ] = None,
    partner: Annotated[str | None, typer.Option(help="The relationship partner's e-mail.")] = None,
    org: Org = "",
) -> None:
    """Set a company's type and/or relationship partner by hand."""
    with _contacts(ctx) as contacts:
        contacts.set_profile(org, domain, type=type, partner=partner)
    console.print(Text(f"{domain}: type {type or 'unchanged'}, partner {partner or 'unchanged'}."))


@app.command("save-filter")
def save_filter(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tab's name.")],
    user: User,
    type: Annotated[CompanyType | None, typer.Option(help="Only this type.")] = None,
    partner: Annotated[str | None, typer.Option(help='A partner\'s e-mail, or "me".')] = None,
    only_mine: Annotated[bool, typer.Option("--mine", help="Only companies you met.")] = False,
    org: Org = "",
) -> None:
    """Save a named filter tab, e.g. firm-wide clients whose partner is me."""
    wanted = CompanyFilter(name, Scope.MINE if only_mine else Scope.FIRM, type, partner)
    with _contacts(ctx) as contacts:
        saved = contacts.save_filter(org, user, wanted)
    console.print(Text(f"Saved filter {saved.name!r}."))


@app.command("filters")
def filters(ctx: typer.Context, user: User, org: Org = "", as_json: Json = False) -> None:
    """Your saved filter tabs."""
    with _contacts(ctx) as contacts:
        found = contacts.filters(org, user)
    rows = [
        {"name": f.name, "scope": f.scope.value, "type": f.type.value if f.type else None,
         "partner": f.partner}
        for f in found
    ]  # fmt: skip
    _print_rows(rows, ("name", "scope", "type", "partner"), as_json)
