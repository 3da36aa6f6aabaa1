"""Trust circles and booking requests in the store: the rules of :mod:`.trust`, with mail.

``uow.repository(TrustRepository)``:

- :meth:`~TrustRepository.signup` creates an owner's circle with their own domain.
- :meth:`~TrustRepository.receive` decides on a request (web or e-mail): a trusted one
  is recorded ``accepted`` (the caller offers slots and schedules); an untrusted one is
  queued ``pending`` and the owner gets an e-mail with signed approve / decline links;
  an e-mail without the owner in copy is ``refused`` with a reply saying why. The same
  e-mail (same Message-ID) received twice is one request, and one set of mails.
- :meth:`~TrustRepository.resolve` follows an approval link: genuine, unexpired, and
  single-use (the token's SHA-256 is stored; a second use is refused), for a request
  that is still pending.
- :meth:`~TrustRepository.expire` marks pending requests past their deadline expired.

Mails go through the outbox in the same transaction. They are sent from the org's
address for ``("approvals", "default")`` when one is set (see :mod:`crm_meetings.senders`),
else from the assistant's own address.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import exc

from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox import Outbox
from crm_meetings.errors import ConflictError, NotFoundError, PermissionDeniedError
from crm_meetings.model import normalize_email
from crm_meetings.routing.rows import one
from crm_meetings.routing.slots import Slot, busy_in_store, free_slots
from crm_meetings.routing.tables import (
    ApprovalTokenRow,
    BookingRequestRow,
    TrustCircleRow,
    TrustEntryRow,
)
from crm_meetings.routing.trust import (
    ApprovalAction,
    Decision,
    TrustCircle,
    TrustMode,
    decide,
    normalize_domain,
    sign_approval,
    sign_link,
    verify_approval,
)
from crm_meetings.senders.mail import notice
from crm_meetings.senders.tables import AddressUseRow, OrgAddressRow
from crm_meetings.store.repositories import Repository
from crm_meetings.store.unit_of_work import UnitOfWork

__all__ = [
    "APPROVALS_USE",
    "CHOICE",
    "SLOT_FORMAT",
    "AssistantConfig",
    "BookingRequest",
    "RequestStatus",
    "TrustRepository",
]

APPROVALS_USE: Final = ("approvals", "default")
#: the purpose of the signed links that pick an offered slot (:func:`.trust.sign_link`)
CHOICE: Final = "slot choice"
#: how offered times are written in mails; a reply quoting one is read back with it
SLOT_FORMAT: Final = "%A %d %B %Y, %H:%M"


class RequestStatus(StrEnum):
    ACCEPTED = "accepted"  # trusted: handled directly
    PENDING = "pending"  # waits for the owner
    APPROVED = "approved"
    DECLINED = "declined"
    EXPIRED = "expired"
    REFUSED = "refused"  # the owner was not in copy


@dataclass(frozen=True, slots=True)
class AssistantConfig:
    """Who the assistant is and how its approval links are made.

    ``approval_url`` is the link's prefix; the token is appended (the web layer serves it
    and calls :meth:`TrustRepository.resolve`). ``choose_url``, when set, is the prefix of
    the link an offer of slots carries to pick one online (:data:`CHOICE`).
    """

    sender: Sender
    secret: bytes = field(repr=False)
    approval_url: str
    valid_for: timedelta = timedelta(days=3)
    zone: str = "UTC"  # the owner's working hours and the offered times are shown here
    offer_days: int = 7
    meeting_length: timedelta = timedelta(minutes=30)
    choose_url: str | None = None

    def choice_link(self, request_id: str, now: datetime) -> str | None:
        """The link to pick one of ``request_id``'s offered slots online (while slots are
        offered: ``offer_days``), or ``None`` without a ``choose_url``."""
        if self.choose_url is None:
            return None
        valid = timedelta(days=self.offer_days)
        token = sign_link(self.secret, CHOICE, request_id, now=now, valid_for=valid)
        return self.choose_url + token


@dataclass(frozen=True, slots=True)
class BookingRequest:
    id: str
    owner: str
    requester: str
    requester_name: str
    channel: str
    subject: str
    body: str
    status: RequestStatus
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decision: Decision


def _request(row: BookingRequestRow) -> BookingRequest:
    status = RequestStatus(row.status)
    decision = {
        RequestStatus.ACCEPTED: Decision.ACCEPT,
        RequestStatus.REFUSED: Decision.REFUSE_NOT_IN_COPY,
    }.get(status, Decision.NEEDS_APPROVAL)
    return BookingRequest(
        id=row.id, owner=row.owner, requester=row.requester, requester_name=row.requester_name,
        channel=row.channel, subject=row.subject, body=row.body, status=status,
        created_at=row.created_at, expires_at=row.expires_at, decided_at=row.decided_at,
        decision=decision,
    )  # fmt: skip


def owner_slots(
    uow: UnitOfWork, owner: str, config: AssistantConfig, now: datetime, *, limit: int = 10
) -> list[Slot]:
    """The owner's first ``limit`` free slots in the next ``offer_days`` (as offered)."""
    until = now + timedelta(days=config.offer_days)
    busy = busy_in_store(uow, owner, start=now, end=until)
    return free_slots(
        busy, start=now, end=until, duration=config.meeting_length, zone=config.zone,
        limit=limit,
    )  # fmt: skip


def offer_text(owner: str, slots: Sequence[Slot], config: AssistantConfig, link: str | None) -> str:
    """The body of an offer: the times (in :data:`SLOT_FORMAT`, which a reply is read
    with), how to choose, or that there is no free time."""
    if not slots:
        return (
            f"{owner} has no free time in the next {config.offer_days} days; "
            "I will come back to you."
        )
    tz = ZoneInfo(config.zone)
    times = "\n".join(
        f"- {a.astimezone(tz).strftime(SLOT_FORMAT)}-{b.astimezone(tz):%H:%M} ({config.zone})"
        for a, b in slots
    )
    online = f"\n\nOr choose online: {link}" if link else ""
    return (
        f"{owner} is free at these times:\n{times}\n\nReply with the one you prefer "
        f"(copy its line) and I will send the invitation.{online}"
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TrustRepository(Repository):
    """Owners' trust circles, the requests queue and approval links."""

    # --- circles ---------------------------------------------------------------------

    def signup(self, org_id: str, owner: str) -> TrustCircle:
        """The owner's circle, created with their own domain on first call."""
        circle = TrustCircle.at_signup(owner)
        if self.session.get(TrustCircleRow, circle.owner) is None:
            self.save(org_id, circle)
        return self.circle(circle.owner)

    def _circle_row(self, owner: str) -> TrustCircleRow:
        email = normalize_email(owner, "owner")
        row = self.session.get(TrustCircleRow, email, populate_existing=True)
        if row is None:
            raise NotFoundError(
                f"{email} has no trust circle", hint="The owner must sign up first."
            )
        return row

    def circle(self, owner: str) -> TrustCircle:
        row = self._circle_row(owner)
        entries = self.session.scalars(
            sa.select(TrustEntryRow).where(TrustEntryRow.owner == row.owner)
        ).all()
        return TrustCircle(
            owner=row.owner,
            mode=TrustMode(row.mode),
            addresses=frozenset(e.value for e in entries if e.kind == "address"),
            domains=frozenset(e.value for e in entries if e.kind == "domain"),
        )

    def save(self, org_id: str, circle: TrustCircle) -> TrustCircle:
        """Write the whole circle (mode and entries)."""
        row = self.session.get(TrustCircleRow, circle.owner)
        if row is None:
            row = TrustCircleRow(owner=circle.owner, org_id=org_id, created_at=self.clock())
            self.session.add(row)
        row.mode = circle.mode.value
        self.session.flush()
        self.session.execute(sa.delete(TrustEntryRow).where(TrustEntryRow.owner == circle.owner))
        entries = [("address", a) for a in circle.addresses] + [
            ("domain", d) for d in circle.domains
        ]
        self.session.add_all(
            TrustEntryRow(owner=circle.owner, kind=k, value=v) for k, v in sorted(entries)
        )
        self.session.flush()
        return circle

    def trust(
        self,
        owner: str,
        *,
        addresses: Iterable[str] = (),
        domains: Iterable[str] = (),
        mode: TrustMode | None = None,
    ) -> TrustCircle:
        """Add addresses and domains (``*.x.com`` for subdomains); optionally set the mode."""
        org_id = self._circle_row(owner).org_id
        circle = self.circle(owner)
        updated = TrustCircle(
            owner=circle.owner,
            mode=mode or circle.mode,
            addresses=circle.addresses | {normalize_email(a) for a in addresses},
            domains=circle.domains | {normalize_domain(d) for d in domains},
        )
        return self.save(org_id, updated)

    def owners_among(self, emails: Iterable[str]) -> list[str]:
        wanted = sorted({normalize_email(e) for e in emails})
        if not wanted:
            return []
        query = sa.select(TrustCircleRow.owner).where(TrustCircleRow.owner.in_(wanted))
        return sorted(self.session.scalars(query))

    # --- requests --------------------------------------------------------------------

    def receive(
        self,
        owner: str,
        requester: str,
        *,
        config: AssistantConfig,
        requester_name: str = "",
        subject: str = "",
        body: str = "",
        cc: Sequence[str] | None = None,
        message_id: str | None = None,
    ) -> BookingRequest:
        """Decide on one request and record it; ``cc`` (e-mail requests) holds every
        visible recipient, To and Cc. Queues the approval or refusal mail."""
        org_id = self._circle_row(owner).org_id
        circle = self.circle(owner)
        if message_id is not None:
            seen = self.session.scalars(
                sa.select(BookingRequestRow).where(
                    BookingRequestRow.owner == circle.owner,
                    BookingRequestRow.message_id == message_id,
                )
            ).first()
            if seen is not None:
                return _request(seen)
        decision = decide(circle, requester, cc=cc)
        status = {
            Decision.ACCEPT: RequestStatus.ACCEPTED,
            Decision.NEEDS_APPROVAL: RequestStatus.PENDING,
            Decision.REFUSE_NOT_IN_COPY: RequestStatus.REFUSED,
        }[decision]
        now = self.clock()
        row = BookingRequestRow(
            id=f"req_{secrets.token_hex(8)}", org_id=org_id, owner=circle.owner,
            requester=normalize_email(requester, "requester"),
            requester_name=" ".join(requester_name.split())[:255],
            channel="email" if cc is not None else "web", subject=subject[:1024], body=body,
            message_id=message_id, status=status.value, created_at=now,
            expires_at=now + config.valid_for,
            decided_at=None if status is RequestStatus.PENDING else now,
        )  # fmt: skip
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except exc.IntegrityError as error:  # the same e-mail, received concurrently
            raise ConflictError(
                f"Request {message_id} is being received already", hint="Try again."
            ) from error
        if status is RequestStatus.PENDING:
            self._ask_owner(row, config)
        elif status is RequestStatus.REFUSED:
            self.refuse(row.org_id, row.requester, config=config, owner=row.owner,
                        subject=subject, message_id=message_id)  # fmt: skip
        return _request(row)

    def refuse(
        self,
        org_id: str,
        requester: str,
        *,
        config: AssistantConfig,
        owner: str | None,
        subject: str,
        message_id: str | None,
    ) -> None:
        """Reply that the owner must be in copy (``owner=None``: we could not tell who)."""
        who = owner or "the person you would like to meet"
        body = (
            f"Hello,\n\nI am the scheduling assistant. I can only arrange a meeting with "
            f"{who} when they are in copy of your e-mail, so that they see every request "
            f"made in their name.\n\nPlease send your request again with {who} in Cc.\n"
        )
        mail = notice(
            sender=self._sender(org_id, config), recipient=requester,
            subject=f"Re: {subject}" if subject else "Your meeting request",
            body=body, topic=f"refusal:{message_id or secrets.token_hex(8)}",
            nonce=requester, now=self.clock(), in_reply_to=message_id,
        )  # fmt: skip
        Outbox.enqueue(UnitOfWork(self.session, self.clock), mail)

    def _ask_owner(self, row: BookingRequestRow, config: AssistantConfig) -> None:
        now = self.clock()
        links = {
            action: config.approval_url
            + sign_approval(config.secret, row.id, action, now=now, valid_for=config.valid_for)
            for action in ApprovalAction
        }
        name = f"{row.requester_name} <{row.requester}>" if row.requester_name else row.requester
        about = f' ("{row.subject}")' if row.subject else ""
        body = (
            f"{name} asked to book a meeting with you{about}.\n\n"
            f"They are not in your trust circle, so the request waits for you.\n\n"
            f"Approve: {links[ApprovalAction.APPROVE]}\n"
            f"Decline: {links[ApprovalAction.DECLINE]}\n\n"
            f"Each link works once, until {row.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        )
        mail = notice(
            sender=self._sender(row.org_id, config), recipient=row.owner,
            subject=f"Approve a meeting request from {row.requester}", body=body,
            topic=f"approval:{row.id}", nonce=row.id, now=now,
        )  # fmt: skip
        Outbox.enqueue(UnitOfWork(self.session, self.clock), mail)

    def _sender(self, org_id: str, config: AssistantConfig) -> Sender:
        row = self.session.scalars(
            sa.select(OrgAddressRow)
            .join(AddressUseRow, AddressUseRow.address_id == OrgAddressRow.id)
            .where(
                AddressUseRow.org_id == org_id,
                AddressUseRow.kind == APPROVALS_USE[0],
                AddressUseRow.ref == APPROVALS_USE[1],
                OrgAddressRow.status == "confirmed",
            )
        ).first()
        if row is None:
            return config.sender
        return Sender(row.email, row.display_name, row.reply_to)

    def offer_slots(
        self, request_id: str, *, config: AssistantConfig, nonce: str = "", note: str = ""
    ) -> list[Slot]:
        """Reply to an accepted or approved request with the owner's free slots, the owner
        in copy; returns the slots (none: the reply says so). One reply per request and
        ``nonce``: the outbox ignores a second offer (a new nonce offers fresh slots, after
        ``note``, e.g. why the last choice could not be scheduled)."""
        row = self._row(request_id)
        if row.status not in (RequestStatus.ACCEPTED.value, RequestStatus.APPROVED.value):
            raise ConflictError(
                f"Request {row.id} is {row.status}: only accepted or approved requests get slots",
                hint="Approve the request first.",
            )
        now = self.clock()
        uow = UnitOfWork(self.session, self.clock)
        slots = owner_slots(uow, row.owner, config, now)
        body = offer_text(row.owner, slots, config, config.choice_link(row.id, now))
        body = f"{note.rstrip('.')}.\n\n{body}" if note else body
        self.answer(row.id, config=config, topic=f"slots:{row.id}", nonce=nonce, body=body)
        return slots

    def answer(
        self, request_id: str, *, config: AssistantConfig, topic: str, nonce: str, body: str
    ) -> None:
        """Queue ``body`` to the requester with the owner in copy (and to the owner with
        the requester in copy), in reply to the request; once per (topic, nonce)."""
        row = self._row(request_id)
        greeting = f"Hello {row.requester_name or row.requester},\n\n"
        text = f"{greeting}{body}\n\n{row.owner} is in copy.\n"
        uow = UnitOfWork(self.session, self.clock)
        for to, cc in ((row.requester, row.owner), (row.owner, row.requester)):
            mail = notice(
                sender=self._sender(row.org_id, config), recipient=to,
                subject=f"Re: {row.subject}" if row.subject else "Your meeting request",
                body=text, topic=topic, nonce=nonce, now=self.clock(),
                in_reply_to=row.message_id, cc=[cc],
            )  # fmt: skip
            Outbox.enqueue(uow, mail)

    def org_of(self, request_id: str) -> str:
        """The org a request was made in."""
        return self._row(request_id).org_id

    def get(self, request_id: str) -> BookingRequest:
        return _request(self._row(request_id))

    def queue(
        self, owner: str, status: RequestStatus | None = RequestStatus.PENDING
    ) -> list[BookingRequest]:
        """The owner's requests (pending ones by default), oldest first."""
        query = sa.select(BookingRequestRow).where(
            BookingRequestRow.owner == normalize_email(owner, "owner")
        )
        if status is not None:
            query = query.where(BookingRequestRow.status == status.value)
        order = (BookingRequestRow.created_at, BookingRequestRow.id)
        return [_request(r) for r in self.session.scalars(query.order_by(*order))]

    def resolve(self, token: str, *, secret: bytes) -> BookingRequest:
        """Follow an approve/decline link: genuine, unexpired, unused, request pending."""
        now = self.clock()
        request_id, action = verify_approval(secret, token, now=now)
        row = self._row(request_id, lock=True)
        try:
            with self.session.begin_nested():
                self.session.add(
                    ApprovalTokenRow(token_hash=token_hash(token), request_id=row.id, used_at=now)
                )
        except exc.IntegrityError as error:
            raise PermissionDeniedError(
                "This approval link was already used.",
                hint="The request was already answered; see it in your queue.",
            ) from error
        if row.status == RequestStatus.PENDING.value and row.expires_at <= now:
            row.status = RequestStatus.EXPIRED.value
        if row.status != RequestStatus.PENDING.value:
            raise ConflictError(
                f"This request is already {row.status}.",
                hint="Nothing more to do; a new request would come with new links.",
            )
        approved = action is ApprovalAction.APPROVE
        row.status = (RequestStatus.APPROVED if approved else RequestStatus.DECLINED).value
        row.decided_at = now
        self.session.flush()
        return _request(row)

    def expire(self) -> int:
        """Mark pending requests past their deadline expired; returns how many."""
        result = self.session.execute(
            sa.update(BookingRequestRow)
            .where(
                BookingRequestRow.status == RequestStatus.PENDING.value,
                BookingRequestRow.expires_at <= self.clock(),
            )
            .values(status=RequestStatus.EXPIRED.value, decided_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0))

    def _row(self, request_id: str, *, lock: bool = False) -> BookingRequestRow:
        missing = NotFoundError(
            f"Booking request {request_id} does not exist",
            hint="It may have been removed; ask the requester to send it again.",
        )
        query = sa.select(BookingRequestRow).where(BookingRequestRow.id == request_id)
        return one(self.session, query, missing, lock=lock)
