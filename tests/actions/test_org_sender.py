"""The actions send from the org's invitation address when the actor's profile may
(``senders.store.sender_for``); otherwise as before, from the organizer."""

from __future__ import annotations

import email
import email.utils
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from crm_meetings.actions import ActionContext, ScheduleRequest, schedule
from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.model import Invitee
from crm_meetings.senders.store import DEFAULT_USE, SenderRepository, confirm_address
from crm_meetings.store import Store, upgrade

CODE = "ABCD2345"
SALES = "sales@acme.example"
pytestmark = pytest.mark.parametrize("rig", ["salesforce-zoom"], indirect=True)


@pytest.fixture
def store(store_url: str, clock: Callable[[], Any]) -> Iterator[Store]:
    """Every revision: the organisation addresses live in a later one than the actions'."""
    upgrade(store_url)
    with Store(store_url, clock=clock) as opened:
        yield opened


def configure(store: Store, org: str, profiles: list[str], *, use: bool = True) -> None:
    with store.transaction() as uow:
        address = uow.repository(SenderRepository).add(
            org, SALES, "Acme Sales", profiles, mail_from=Sender("no-reply@acme.example"),
            reply_to="team@acme.example", code_factory=lambda: CODE,
        )  # fmt: skip
    confirm_address(store, org, address.id, CODE)
    if use:
        with store.transaction() as uow:
            uow.repository(SenderRepository).set_use(org, *DEFAULT_USE, address.id)


def book(ctx: ActionContext, rig: Any) -> None:
    start = ctx.clock() + timedelta(days=2)
    schedule(ctx, ScheduleRequest(
        idempotency_key="k-sender", subject="Quarterly review", start=start,
        end=start + timedelta(hours=1), timezone="Europe/Paris",
        invitees=(Invitee("zed@client.example", "Zed"),), related=(rig.related,),
    ))  # fmt: skip


def invitation_headers(store: Store) -> list[tuple[str, str | None]]:
    """(From address, Reply-To address) of every invitation queued by the action."""
    with store.transaction() as uow:
        rows = uow.session.scalars(
            sa.select(OutboxMessageRow.raw).where(
                OutboxMessageRow.recipient == "zed@client.example"
            )
        ).all()
    found = []
    for raw in rows:
        message = email.message_from_bytes(raw)
        reply = message["Reply-To"]
        found.append((str(message["From"]), email.utils.parseaddr(reply)[1] if reply else None))
    return found


def test_an_allowed_profile_sends_from_the_orgs_address(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    configure(store, ctx.org_id, ["rep"])
    book(replace(ctx, profile="rep"), rig)
    ((sender, reply_to),) = invitation_headers(store)
    assert email.utils.parseaddr(sender) == ("Acme Sales", SALES)
    assert reply_to == "team@acme.example"


def test_a_profile_the_address_does_not_allow_sends_as_the_organizer(
    ctx: ActionContext, rig: Any, store: Store
) -> None:
    configure(store, ctx.org_id, ["admin"])
    book(replace(ctx, profile="rep"), rig)
    ((sender, _),) = invitation_headers(store)
    assert email.utils.parseaddr(sender)[1] == ctx.actor.email


@pytest.mark.parametrize("case", ["no profile", "no address in use", "another org's address"])
def test_otherwise_the_organizer_sends(
    ctx: ActionContext, rig: Any, store: Store, case: str
) -> None:
    if case == "no profile":
        configure(store, ctx.org_id, ["rep"])
    elif case == "no address in use":
        configure(store, ctx.org_id, ["rep"], use=False)
    else:
        configure(store, "another-org", ["rep"])
    book(ctx if case == "no profile" else replace(ctx, profile="rep"), rig)
    ((sender, _),) = invitation_headers(store)
    assert email.utils.parseaddr(sender)[1] == ctx.actor.email
