"""Choosing an offered slot schedules the meeting through the schedule action: e-mail replies
through a real SMTP listener, on Salesforce and Zoom emulators, SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crm_meetings.actions import ActionContext
from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.errors import ValidationError
from crm_meetings.model import Person
from crm_meetings.routing.inbound import InboundHandler, InboundListener
from crm_meetings.routing.requests import AssistantConfig, TrustRepository
from crm_meetings.routing.scheduling import HostContext, read_choice
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory, load_module, sandbox_factory  # noqa: F401
from crm_meetings.store import Store

TESTS = Path(__file__).parent.parent
ORG = "acme"
CONFIG = AssistantConfig(
    sender=Sender("assistant@acme.example", "Acme Assistant"),
    secret=b"s" * 32,
    approval_url="https://meet.acme.example/approvals/",
    choose_url="https://meet.acme.example/book/choose/",
)


SALESFORCE = load_module(TESTS / "contract" / "harness_salesforce.py")
PROVIDERS = load_module(TESTS / "conferencing" / "conftest.py")


def test_a_reply_is_read_for_the_offered_time_it_names() -> None:
    offered = "- Tuesday 03 March 2026, 10:00-10:30 (Europe/Paris)"
    assert read_choice(f"Yes please:\n{offered}\n", "Europe/Paris") == datetime(
        2026, 3, 3, 9, 0, tzinfo=UTC
    )
    quoted = f"> {offered}\n> - Wednesday 04 March 2026, 11:00-11:30 (UTC)\nthe 2nd one"
    with pytest.raises(ValidationError, match="none of the offered times"):
        read_choice(quoted, "UTC")  # quoted lines are our own offer, not a choice
    assert read_choice("2026-03-04T11:00Z", "UTC") == datetime(2026, 3, 4, 11, tzinfo=UTC)
    assert read_choice("2026-03-04 11:00", "Europe/Paris") == datetime(2026, 3, 4, 10, tzinfo=UTC)


@pytest.fixture
def box(sandbox_factory: SandboxFactory) -> Sandbox:  # noqa: F811
    return sandbox_factory(["salesforce", "zoom"])


@pytest.fixture
def hosts(box: Sandbox, store: Store, clock: Any) -> Iterator[HostContext]:
    connector = SALESFORCE.make_connector(box)
    provider = PROVIDERS.build_zoom(box, [])

    def context(org_id: str, host: Person) -> ActionContext:
        return ActionContext(
            store=store, connector=connector, provider=provider, actor=host, clock=clock,
            org_id=org_id,
        )  # fmt: skip

    try:
        yield context
    finally:
        provider.close()
        connector.close()


@pytest.fixture
def owner(box: Sandbox, store: Store) -> str:
    """A seeded rep (a Zoom user), signed up: their domain is trusted."""
    assert box.data is not None
    with store.transaction() as uow:
        return uow.repository(TrustRepository).signup(ORG, box.data.users[0].email).owner


@pytest.fixture
def port(store: Store, hosts: HostContext, owner: str) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free: int = probe.getsockname()[1]
    with InboundListener(InboundHandler(store, CONFIG, ORG, hosts), port=free):
        yield free


def send(port: int, sender: str, cc: str, body: str, msgid: str, reply_to: str = "") -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = CONFIG.sender.address
    message["Cc"] = cc
    message["Subject"] = "Re: Meeting next week?" if reply_to else "Meeting next week?"
    message["Message-ID"] = msgid
    if reply_to:
        message["In-Reply-To"] = reply_to
        message["References"] = f"<first@elsewhere.example> {reply_to}"
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, to_addrs=[CONFIG.sender.address])


def queued(store: Store, recipient: str) -> list[tuple[str, str, str]]:
    """(topic, Message-ID, text) of each mail queued to ``recipient``, oldest first."""
    with store.transaction() as uow:
        rows = uow.session.execute(
            sa.select(
                OutboxMessageRow.meeting_uid, OutboxMessageRow.message_id, OutboxMessageRow.raw
            )
            .where(OutboxMessageRow.recipient == recipient)
            .order_by(OutboxMessageRow.id)
        ).all()
    found = []
    for topic, mid, raw in rows:
        message = BytesParser(policy=default).parsebytes(raw)
        part = message.get_body(preferencelist=("plain",))
        found.append((topic, mid, part.get_content() if part is not None else ""))
    return found


def offered_line(text: str, index: int = 0) -> str:
    return [line for line in text.splitlines() if line.startswith("- ")][index]


def test_a_reply_naming_an_offered_time_schedules_the_meeting_once(
    store: Store, port: int, owner: str, box: Sandbox
) -> None:
    requester = "bea@" + owner.split("@")[1]
    send(port, requester, owner, "Could we meet?", "<ask@x.example>")
    [(topic, offer_id, text)] = queued(store, requester)
    assert topic.startswith("slots:")
    assert "Or choose online: https://meet.acme.example/book/choose/" in text
    choice = offered_line(text, 1)
    quoted = "\n".join(f"> {line}" for line in text.splitlines())
    body = f"This one suits me:\n{choice}\n\n{quoted}"
    send(port, requester, owner, body, "<pick@x.example>", reply_to=offer_id)
    with store.transaction() as uow:
        [meeting] = uow.meetings.list_by_organizer(owner, org_id=ORG)
    assert [i.email for i in meeting.invitees] == [requester]
    assert meeting.start == read_choice(choice, "UTC")
    assert meeting.crm_record_id in {e["Id"] for e in box.emulator("salesforce").state()["events"]}
    answers = [t for topic, _, t in queued(store, requester) if topic.startswith("scheduled:")]
    assert len(answers) == 1
    assert "is scheduled for" in answers[0]
    assert [t for topic, _, t in queued(store, owner) if topic.startswith("scheduled:")]
    send(port, requester, owner, body, "<pick-again@x.example>", reply_to=offer_id)  # a repeat
    with store.transaction() as uow:
        assert len(uow.meetings.list_by_organizer(owner, org_id=ORG)) == 1
    assert len([t for t, _, _ in queued(store, requester) if t.startswith("scheduled:")]) == 1


def test_a_reply_without_an_offered_time_or_for_a_taken_one_gets_fresh_slots(
    store: Store, port: int, owner: str
) -> None:
    domain = owner.split("@")[1]
    bea, cal = f"bea@{domain}", f"cal@{domain}"
    send(port, bea, owner, "Could we meet?", "<ask-b@x.example>")
    send(port, cal, owner, "Could we meet?", "<ask-c@x.example>")
    [(_, bea_offer, bea_text)] = queued(store, bea)
    [(_, cal_offer, cal_text)] = queued(store, cal)
    send(port, bea, owner, "Any time!", "<vague@x.example>", reply_to=bea_offer)
    again = queued(store, bea)
    assert len(again) == 2
    assert "names none of the offered times" in again[1][2]
    assert "is free at these times" in again[1][2]
    first = offered_line(bea_text)
    assert first == offered_line(cal_text)  # both were offered the same first slot
    send(port, bea, owner, first, "<b-pick@x.example>", reply_to=bea_offer)
    send(port, cal, owner, first, "<c-pick@x.example>", reply_to=cal_offer)
    with store.transaction() as uow:
        [meeting] = uow.meetings.list_by_organizer(owner, org_id=ORG)
    assert [i.email for i in meeting.invitees] == [bea]
    cal_mails = queued(store, cal)
    assert "is not free" in cal_mails[-1][2]
    assert first not in cal_mails[-1][2]  # the fresh slots leave the taken one out
    send(port, "eve@client.example", owner, first, "<e@x.example>", reply_to=cal_offer)
    send(port, cal, "someone@else.example", offered_line(cal_mails[-1][2]), "<nocc@x.example>",
         reply_to=cal_offer)  # fmt: skip
    with store.transaction() as uow:
        assert len(uow.meetings.list_by_organizer(owner, org_id=ORG)) == 1  # neither scheduled
    assert queued(store, "eve@client.example") == []
