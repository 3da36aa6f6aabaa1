"""Trust circles, the requests queue and approval links through the store; e-mail
requests through a real SMTP listener on 127.0.0.1."""

from __future__ import annotations

import re
import smtplib
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa

from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.errors import ConflictError, PermissionDeniedError
from crm_meetings.routing.inbound import InboundHandler, InboundListener, parse_mail
from crm_meetings.routing.requests import (
    AssistantConfig,
    RequestStatus,
    TrustRepository,
)
from crm_meetings.routing.trust import TrustCircle, TrustMode
from crm_meetings.senders.store import SenderRepository, confirm_address
from crm_meetings.store import Store, upgrade

ORG = "acme"
OWNER = "olivia@acme.example"
CONFIG = AssistantConfig(
    sender=Sender("assistant@acme.example", "Acme Assistant"),
    secret=b"s" * 32,
    approval_url="https://meet.acme.example/approvals/",
)


@pytest.fixture
def owner(store: Store) -> str:
    with store.transaction() as uow:
        return uow.repository(TrustRepository).signup(ORG, OWNER).owner


def receive(store: Store, requester: str, **kw: Any) -> Any:
    with store.transaction() as uow:
        return uow.repository(TrustRepository).receive(OWNER, requester, config=CONFIG, **kw)


def mails(store: Store) -> list[tuple[str, str]]:
    """(recipient, text) of every queued mail, oldest first."""
    with store.transaction() as uow:
        rows = uow.session.execute(
            sa.select(OutboxMessageRow.recipient, OutboxMessageRow.raw).order_by(
                OutboxMessageRow.id
            )
        ).all()
    return [(r, raw.decode("ascii").replace("=\r\n", "").replace("=3D", "=")) for r, raw in rows]


def links(text: str) -> dict[str, str]:
    return dict(re.findall(r"(Approve|Decline): https://meet\.acme\.example/approvals/(\S+)", text))


def test_signup_trusts_the_owners_domain_only(store: Store, owner: str) -> None:
    with store.transaction() as uow:
        circle = uow.repository(TrustRepository).signup(ORG, OWNER)  # idempotent
    assert circle == TrustCircle(OWNER, domains=frozenset({"acme.example"}))
    assert receive(store, "bob@ACME.example").status is RequestStatus.ACCEPTED
    assert receive(store, "eve@evil-acme.example").status is RequestStatus.PENDING
    assert receive(store, "eve@mail.acme.example").status is RequestStatus.PENDING
    assert [to for to, _ in mails(store)] == [OWNER, OWNER]


def test_listed_addresses_and_domains_and_trust_everyone(store: Store, owner: str) -> None:
    with store.transaction() as uow:
        uow.repository(TrustRepository).trust(
            owner, addresses=["vip@gmail.com"], domains=["*.partner.example", "BÜCHER.example"]
        )
    for requester in ("vip@gmail.com", "a@eu.partner.example", "b@xn--bcher-kva.example"):
        assert receive(store, requester).status is RequestStatus.ACCEPTED
    assert receive(store, "other@gmail.com").status is RequestStatus.PENDING
    with store.transaction() as uow:
        uow.repository(TrustRepository).trust(owner, mode=TrustMode.EVERYONE)
    assert receive(store, "other@gmail.com").status is RequestStatus.ACCEPTED


def test_restricted_and_empty_sends_every_outside_request_for_approval(store: Store) -> None:
    with store.transaction() as uow:
        uow.repository(TrustRepository).save(ORG, TrustCircle(OWNER))
    assert receive(store, "bob@acme.example").status is RequestStatus.PENDING


def test_approval_link_valid_once_then_refused(store: Store, owner: str) -> None:
    request = receive(store, "eve@client.example", requester_name="Eve", subject="Intro call")
    ((to, text),) = mails(store)
    assert to == OWNER
    assert "Eve <eve@client.example> asked to book a meeting with you" in text
    found = links(text)
    with store.transaction() as uow:
        approved = uow.repository(TrustRepository).resolve(found["Approve"], secret=CONFIG.secret)
    assert approved.id == request.id
    assert approved.status is RequestStatus.APPROVED
    with store.transaction() as uow, pytest.raises(PermissionDeniedError, match="already used"):
        uow.repository(TrustRepository).resolve(found["Approve"], secret=CONFIG.secret)
    with store.transaction() as uow, pytest.raises(ConflictError, match="already approved"):
        uow.repository(TrustRepository).resolve(found["Decline"], secret=CONFIG.secret)


def test_tampered_and_expired_links_are_refused(store: Store, owner: str, clock: Any) -> None:
    receive(store, "eve@client.example")
    found = links(mails(store)[0][1])
    body, _, mac = found["Decline"].partition(".")
    tampered = f"{body[:-2]}xx.{mac}"
    with store.transaction() as uow, pytest.raises(PermissionDeniedError, match="not genuine"):
        uow.repository(TrustRepository).resolve(tampered, secret=CONFIG.secret)
    with store.transaction() as uow, pytest.raises(PermissionDeniedError, match="not genuine"):
        uow.repository(TrustRepository).resolve(found["Decline"], secret=b"other" * 8)
    clock.advance(days=3)
    with store.transaction() as uow, pytest.raises(PermissionDeniedError, match="expired"):
        uow.repository(TrustRepository).resolve(found["Decline"], secret=CONFIG.secret)
    with store.transaction() as uow:
        assert uow.repository(TrustRepository).expire() == 1
        (request,) = uow.repository(TrustRepository).queue(OWNER, None)
    assert request.status is RequestStatus.EXPIRED


def test_an_email_without_the_owner_in_copy_is_refused_with_a_reply(
    store: Store, owner: str
) -> None:
    request = receive(store, "bob@acme.example", cc=["someone@acme.example"], message_id="<m1@x>")
    assert request.status is RequestStatus.REFUSED
    assert receive(store, "bob@acme.example", cc=[], message_id="<m1@x>").id == request.id
    ((to, text),) = mails(store)  # the replay sent nothing more
    assert to == "bob@acme.example"
    assert f"send your request again with {OWNER} in Cc" in text
    assert "In-Reply-To: <m1@x>" in text


def test_approval_mails_come_from_the_orgs_approvals_address(store: Store, owner: str) -> None:
    with store.transaction() as uow:
        repo = uow.repository(SenderRepository)
        address = repo.add(ORG, "desk@acme.example", "Acme Desk", ["admin"],
                           mail_from=CONFIG.sender, code_factory=lambda: "ABCD2345")  # fmt: skip
    confirm_address(store, ORG, address.id, "ABCD2345")
    with store.transaction() as uow:
        uow.repository(SenderRepository).set_use(ORG, "approvals", "default", address.id)
    receive(store, "eve@client.example")
    assert "From: Acme Desk <desk@acme.example>" in mails(store)[-1][1]


def test_accepted_and_approved_requests_are_offered_free_slots(
    store: Store, owner: str, make_meeting: Any, clock: Any
) -> None:
    busy = make_meeting(start=clock.now, end=clock.now + timedelta(hours=1))  # 09:00-10:00
    with store.transaction() as uow:
        uow.meetings.add(busy)
    pending = receive(store, "eve@client.example", subject="Intro")
    with store.transaction() as uow, pytest.raises(ConflictError, match="pending"):
        uow.repository(TrustRepository).offer_slots(pending.id, config=CONFIG)
    approve = links(mails(store)[0][1])["Approve"]
    with store.transaction() as uow:
        repo = uow.repository(TrustRepository)
        repo.resolve(approve, secret=CONFIG.secret)
        slots = repo.offer_slots(pending.id, config=CONFIG)
        assert repo.offer_slots(pending.id, config=CONFIG) == slots  # no second reply
    assert len(slots) == 10
    assert slots[0][0] == clock.now + timedelta(hours=1)  # after the busy meeting
    assert [to for to, _ in mails(store)] == [OWNER, "eve@client.example", OWNER]
    assert "Monday 02 March 2026, 10:00-10:30 (UTC)" in mails(store)[1][1]


# --- e-mail requests through the SMTP listener --------------------------------------------


@pytest.fixture
def listener(store: Store, owner: str) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    with InboundListener(InboundHandler(store, CONFIG, ORG), port=port):
        yield port


def send(port: int, sender: str, to: list[str], cc: list[str], msgid: str) -> None:
    message = EmailMessage()
    message["From"] = f"Olivia Lookalike <{sender}>"  # the display name never counts
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = "Meeting next week?"
    message["Message-ID"] = msgid
    message.set_content("Could we meet on Tuesday?")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, to_addrs=[CONFIG.sender.address])


def test_email_requests_end_to_end(store: Store, listener: int, clock: Any) -> None:
    assistant = CONFIG.sender.address
    send(listener, "eve@client.example", [assistant], [OWNER], "<a@client.example>")
    send(listener, "eve@client.example", [assistant], [OWNER], "<a@client.example>")  # again
    clock.advance(minutes=1)
    send(listener, "bob@acme.example", [assistant, OWNER], [], "<b@acme.example>")
    clock.advance(minutes=1)
    tagged = "assistant+olivia=acme.example@acme.example"
    send(listener, "eve@client.example", [tagged], [], "<c@client.example>")
    with store.transaction() as uow:
        requests = uow.repository(TrustRepository).queue(OWNER, None)
    assert [(r.requester, r.status) for r in requests] == [
        ("eve@client.example", RequestStatus.PENDING),
        ("bob@acme.example", RequestStatus.ACCEPTED),
        ("eve@client.example", RequestStatus.REFUSED),
    ]
    assert requests[0].body.strip() == "Could we meet on Tuesday?"
    assert requests[0].requester_name == "Olivia Lookalike"
    sent = mails(store)
    assert [to for to, _ in sent] == [OWNER, "bob@acme.example", OWNER, "eve@client.example"]
    assert links(sent[0][1]).keys() == {"Approve", "Decline"}
    assert "is free at these times" in sent[1][1]  # the trusted request: the owner's slots
    assert f"Cc: {OWNER}" in sent[1][1]
    assert "In-Reply-To: <b@acme.example>" in sent[1][1]


def test_the_listener_takes_mail_for_the_assistant_only(listener: int) -> None:
    with smtplib.SMTP("127.0.0.1", listener, timeout=10) as client:
        client.ehlo()
        client.mail("eve@client.example")
        code, _ = client.rcpt("olivia@acme.example")
    assert code == 550


def test_parse_mail_reads_addresses_not_names() -> None:
    raw = (
        b'From: "olivia@acme.example" <eve@client.example>\r\n'
        b'To: Assistant <ASSISTANT@acme.example>, "Bob" <bob@acme.example>\r\n'
        b"Cc: olivia@acme.example\r\nSubject: Hi\r\nMessage-ID: <x@y>\r\n\r\nHello\r\n"
    )
    mail = parse_mail(raw, "assistant@acme.example")
    assert mail.sender == "eve@client.example"
    assert mail.recipients == ("bob@acme.example", "olivia@acme.example")
    assert mail.owner_tag is None
    assert mail.message_id == "<x@y>"


def test_expiry_is_three_days_by_default() -> None:
    assert CONFIG.valid_for == timedelta(days=3)


@pytest.mark.postgres
def test_concurrent_clicks_answer_a_request_once(postgres_url: str) -> None:
    upgrade(postgres_url)
    with Store(postgres_url) as store:
        with store.transaction() as uow:
            uow.repository(TrustRepository).signup(ORG, OWNER)
        receive(store, "eve@client.example")
        found = links(mails(store)[0][1])
        tokens = [found["Approve"], found["Approve"], found["Decline"], found["Approve"]]
        start = threading.Barrier(len(tokens))
        outcomes: list[str] = []

        def click(token: str) -> None:
            start.wait()
            try:
                with store.transaction() as uow:
                    answer = uow.repository(TrustRepository).resolve(token, secret=CONFIG.secret)
                outcomes.append(answer.status.value)
            except (ConflictError, PermissionDeniedError) as error:
                outcomes.append(type(error).__name__)

        workers = [threading.Thread(target=click, args=(t,)) for t in tokens]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    answered = [o for o in outcomes if o in ("approved", "declined")]
    assert len(answered) == 1
    assert len(outcomes) == len(tokens)
