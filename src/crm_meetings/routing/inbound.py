"""E-mail requests to the assistant address, through an SMTP listener (aiosmtpd).

Why a listener rather than a polled mailbox: the organisation's MX (or a forwarding rule)
hands the assistant's mail straight to the worker, nothing waits in a mailbox between
polls, and a refusal to store a request is an SMTP answer the sending server retries
(``451``). The listener binds ``127.0.0.1`` by default: put it behind the MTA that checks
SPF/DKIM/DMARC, because the ``From`` header is who the request is taken to be from.

Who the request is for: a tag on the assistant address names the owner
(``assistant+olivia=acme.example@…`` is for ``olivia@acme.example``); without one, the
owner is the signed-up owner among the visible recipients (To and Cc). The owner must be
among those recipients (the in-copy rule); display names never count, only addresses.

A reply to an offer of slots (its ``In-Reply-To`` or ``References`` names the offer's
Message-ID) chooses a time: when the handler has ``hosts`` (the actions' context of an
owner), the first unquoted line naming an offered time schedules the meeting
(:func:`~crm_meetings.routing.scheduling.choose_request_slot`); a reply naming no offered
time, or one taken meanwhile, gets fresh slots; a reply from anyone but the requester, or
without the owner in copy, schedules nothing.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import getaddresses, parseaddr
from typing import Any

import sqlalchemy as sa
import structlog
from aiosmtpd.controller import Controller

from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.errors import (
    ConflictError,
    CrmMeetingsError,
    PermissionDeniedError,
    ValidationError,
)
from crm_meetings.model import normalize_email
from crm_meetings.routing.requests import (
    AssistantConfig,
    BookingRequest,
    RequestStatus,
    TrustRepository,
)
from crm_meetings.routing.scheduling import (
    HostContext,
    SlotTakenError,
    choose_request_slot,
    read_choice,
)
from crm_meetings.store import Store

_log = structlog.get_logger(__name__)

__all__ = ["InboundHandler", "InboundListener", "InboundMail", "parse_mail"]


@dataclass(frozen=True, slots=True)
class InboundMail:
    sender: str
    sender_name: str
    recipients: tuple[str, ...]  # To and Cc, bare addresses, the assistant's excluded
    owner_tag: str | None  # from assistant+TAG@…, as an address
    subject: str
    body: str
    message_id: str | None
    replies_to: tuple[str, ...] = ()  # Message-IDs in In-Reply-To and References


def _split(address: str) -> tuple[str, str | None]:
    """``(address without tag, owner named by the tag)``."""
    local, _, domain = address.rpartition("@")
    base, plus, tag = local.partition("+")
    owner = None
    if plus and "=" in tag:
        name, _, owner_domain = tag.rpartition("=")
        owner = f"{name}@{owner_domain}"
    return f"{base}@{domain}", owner


def parse_mail(raw: bytes, assistant: str) -> InboundMail:
    """The parts of a request e-mail we act on; ValidationError if it has no usable From."""
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    name, address = parseaddr(str(message.get("From", "")))
    sender = normalize_email(address, "from")
    mine = normalize_email(assistant, "assistant")
    recipients: list[str] = []
    tag: str | None = None
    for _, found in getaddresses(
        [str(v) for v in message.get_all("To", []) + message.get_all("Cc", [])]
    ):
        if not found:
            continue
        try:
            email = normalize_email(found, "recipient")
        except ValidationError:
            continue
        bare, owner = _split(email)
        if bare == mine:
            tag = owner or tag
        elif email != sender and email not in recipients:
            recipients.append(email)
    part = message.get_body(preferencelist=("plain",))
    body = part.get_content() if part is not None else ""
    subject = " ".join(str(message.get("Subject", "")).split())
    threads = " ".join(str(message.get(h, "")) for h in ("In-Reply-To", "References"))
    return InboundMail(
        sender=sender,
        sender_name=" ".join(name.split()),
        recipients=tuple(recipients),
        owner_tag=tag,
        subject=subject,
        body=str(body),
        message_id=str(message["Message-ID"]).strip() if message["Message-ID"] else None,
        replies_to=tuple(dict.fromkeys(re.findall(r"<[^<>\s]{1,250}>", threads))),
    )


@dataclass
class InboundHandler:
    """aiosmtpd handler: accept mail for the assistant address, decide, queue replies."""

    store: Store
    config: AssistantConfig
    org_id: str
    hosts: HostContext | None = None  # without it, replies choosing a time are not read

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        try:
            bare, _ = _split(normalize_email(address, "recipient"))
        except ValidationError:
            return "553 5.1.3 Not a valid address"
        if bare != self.config.sender.address:
            return "550 5.1.1 Only the scheduling assistant receives mail here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.receive, raw)
        except ValidationError as error:
            return f"550 5.6.0 {error.message[:200]}"
        except CrmMeetingsError:
            return "451 4.3.0 Could not record the request now; try again later"
        return "250 2.0.0 Accepted"

    def receive(self, raw: bytes) -> BookingRequest | None:
        """Record one e-mail request (``None``: refused before we knew the owner)."""
        mail = parse_mail(raw, self.config.sender.address)
        offer = self._offer_replied_to(mail) if self.hosts is not None else None
        if offer is not None:
            return self._choose(mail, offer)
        with self.store.transaction() as uow:
            trust = uow.repository(TrustRepository)
            owners = [mail.owner_tag] if mail.owner_tag else trust.owners_among(mail.recipients)
            known = trust.owners_among(owners)
            if not known:
                trust.refuse(
                    self.org_id, mail.sender, config=self.config, owner=mail.owner_tag,
                    subject=mail.subject, message_id=mail.message_id,
                )  # fmt: skip
                return None
            request = trust.receive(
                known[0], mail.sender, config=self.config, requester_name=mail.sender_name,
                subject=mail.subject, body=mail.body, cc=mail.recipients,
                message_id=mail.message_id,
            )  # fmt: skip
            if request.status is RequestStatus.ACCEPTED:
                trust.offer_slots(request.id, config=self.config)  # once per request
            return request

    def _offer_replied_to(self, mail: InboundMail) -> str | None:
        """The request whose offer of slots ``mail`` replies to, if any."""
        if not mail.replies_to:
            return None
        with self.store.transaction() as uow:
            topics = uow.session.scalars(
                sa.select(OutboxMessageRow.meeting_uid).where(
                    OutboxMessageRow.message_id.in_(mail.replies_to),
                    OutboxMessageRow.meeting_uid.startswith("slots:"),
                )
            ).first()
        return None if topics is None else topics.removeprefix("slots:")

    def _choose(self, mail: InboundMail, request_id: str) -> BookingRequest | None:
        """A reply to an offer: schedule the time it names, or answer why not."""
        assert self.hosts is not None
        with self.store.transaction() as uow:
            found = uow.repository(TrustRepository).get(request_id)
        if mail.sender != found.requester or found.owner not in mail.recipients:
            _log.warning(
                "inbound.choice_ignored", request=request_id,
                reason="not from the requester" if mail.sender != found.requester
                else "the owner is not in copy",
            )  # fmt: skip
            return found
        nonce = mail.message_id or mail.body[:200]
        try:
            start = read_choice(mail.body, self.config.zone)
            choose_request_slot(
                self.store, self.hosts, request_id, start, config=self.config,
                requester=mail.sender,
            )  # fmt: skip
        except (ValidationError, SlotTakenError) as error:
            with self.store.transaction() as uow:
                uow.repository(TrustRepository).offer_slots(
                    request_id, config=self.config, nonce=nonce, note=error.message
                )
        except (ConflictError, PermissionDeniedError) as error:
            with self.store.transaction() as uow:
                uow.repository(TrustRepository).answer(
                    request_id, config=self.config, topic=f"refused-choice:{request_id}",
                    nonce=nonce, body=f"{error.message}.\n{error.hint}",
                )  # fmt: skip
        return found


class InboundListener:
    """The SMTP listener: ``start()``, ``stop()``, or ``with InboundListener(...):``."""

    def __init__(
        self, handler: InboundHandler, *, host: str = "127.0.0.1", port: int = 2525
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen; a port another process holds raises ``OSError`` at once (aiosmtpd's own
        start would only time out after its 5-second ``ready_timeout``)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server
            probe.bind((self.host, self.port))
        self._controller = Controller(self.handler, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> InboundListener:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
