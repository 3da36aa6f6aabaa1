"""Mail sent from an organisation address, logged on the meeting's CRM records once.

The rep's own mailbox is captured by the CRM's inbox integrations; mail crm-meetings sends
from an organisation address is not, so it is logged here, through
:meth:`Connector.log_emails <crm_meetings.connectors.base.Connector.log_emails>`:

- :func:`queue_logging` adds one ``crm_mail_log`` row per new message, inside the unit of
  work that queued the message in the outbox: a row exists if and only if the mail does.
- :func:`log_pending` (the worker, after each outbox delivery) claims the rows whose message
  the outbox has **sent** (``pending → logging``, one transaction), asks each CRM to log
  them in batches, and records each answer in a transaction of its own: ``logged``; a
  refusal (validation, not found) → ``failed`` with the CRM's reason; an outage, a rate
  limit or a batch that failed whole → ``pending`` again later (the outbox's backoff), until
  ``max_attempts``. Delivery never waits for the CRM: the outbox does not read this table.
- A logger that dies after the CRM wrote leaves its rows in ``logging``; after
  ``stale_after`` they are claimed again with ``maybe_logged``, and the CRM's unique key
  (Salesforce, HubSpot) or a look at the record's notes (Zoho) keeps the e-mail from being
  logged twice.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Final, cast

import sqlalchemy as sa

from crm_meetings.calendar.imip import OutgoingMail
from crm_meetings.calendar.outbox import OutboxPolicy, OutboxStatus, next_attempt
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.connectors.base import BatchResult, Connector, SentEmail
from crm_meetings.errors import (
    ConflictError,
    CrmMeetingsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import CrmKind, Meeting, Person, utc
from crm_meetings.redaction import redact
from crm_meetings.senders.tables import MailLogRow
from crm_meetings.store import DEFAULT_ORG_ID
from crm_meetings.store.statements import insert_ignoring

if TYPE_CHECKING:
    from crm_meetings.store import Store, UnitOfWork

__all__ = ["LogReport", "LogStatus", "log_pending", "queue_logging", "sent_email"]

_MAX_ERROR: Final = 2000
_POLICY: Final = OutboxPolicy()  # the outbox's backoff and bounds


def _no_hook(boundary: str) -> None:
    return None


class LogStatus:
    PENDING: Final = "pending"
    LOGGING: Final = "logging"
    LOGGED: Final = "logged"
    FAILED: Final = "failed"


@dataclass(slots=True)
class LogReport:
    """What one :func:`log_pending` call did, by ``crm_mail_log`` row id."""

    logged: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.logged) + len(self.deferred) + len(self.failed)


#: queue a delivered mail for logging once per mail (built once; rows bound at execution)
_QUEUE: Final = insert_ignoring(
    cast(sa.Table, MailLogRow.__table__), ["mail_key"], returning=MailLogRow.__table__.c.id
)


def queue_logging(
    uow: UnitOfWork, meeting: Meeting, mails: Iterable[OutgoingMail], *, org_id: str
) -> int:
    """Log ``mails`` (already queued in the outbox) on ``meeting``'s CRM once delivered;
    returns how many were new. Call it in the unit of work that queued them."""
    now = utc(uow.clock(), "now")
    rows = [
        {
            "mail_key": mail.idempotency_key,
            "org_id": org_id,
            "crm": meeting.crm.value,
            "meeting_id": meeting.id,
            "status": LogStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for mail in mails
    ]
    if not rows:
        return 0
    return len(uow.session.scalars(_QUEUE.on(uow.session), rows).all())


def sent_email(
    key: str, raw: bytes, meeting: Meeting, sent_at: datetime, *, maybe_logged: bool = False
) -> SentEmail:
    """The :class:`SentEmail` for a delivered message, read from its bytes."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    (sender,) = message["From"].addresses
    recipients = tuple(a.addr_spec for a in message["To"].addresses)
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    return SentEmail(
        key=key,
        message_id=str(message["Message-ID"]),
        meeting=meeting,
        sender=Person(sender.addr_spec, sender.display_name),
        recipients=recipients,
        subject=str(message["Subject"]),
        text=plain.get_content() if isinstance(plain, EmailMessage) else "",
        html=html.get_content() if isinstance(html, EmailMessage) else "",
        sent_at=sent_at,
        maybe_logged=maybe_logged,
    )


def log_pending(
    store: Store,
    connectors: Mapping[CrmKind, Connector],
    now: datetime,
    *,
    org_id: str = DEFAULT_ORG_ID,
    policy: OutboxPolicy = _POLICY,
    hook: Callable[[str], None] = _no_hook,
) -> LogReport:
    """Log every delivered, due message of ``org_id`` on the CRMs in ``connectors``.

    ``hook(boundary)`` is called once a CRM answered, before the answers are recorded
    (``"crm.logged"``): tests raise from it to simulate a crash there."""
    now = utc(now, "now")
    report = LogReport()
    claimed = _claim(store, now, policy, org_id, [crm.value for crm in connectors])
    for crm, batch in claimed.items():
        connector = connectors[CrmKind(crm)]
        emails = [item for _, _, item in batch if isinstance(item, SentEmail)]
        try:
            answers = iter(connector.log_emails(emails) if emails else [])
        except Exception as outage:  # the whole batch waits for a later round
            for row_id, attempts, _ in batch:
                _record(store, row_id, now, attempts, outage, None, policy, report)
            continue
        hook("crm.logged")
        for row_id, attempts, item in batch:
            result = next(answers) if isinstance(item, SentEmail) else None
            failure = item if isinstance(item, CrmMeetingsError) else None
            error = failure or (result.error or _no_answer(result) if result else None)
            _record(store, row_id, now, attempts, error, result, policy, report)
    return report


_Claimed = tuple[int, int, SentEmail | CrmMeetingsError]


def _claim(
    store: Store, now: datetime, policy: OutboxPolicy, org_id: str, crms: Sequence[str]
) -> dict[str, list[_Claimed]]:
    """Mark due rows whose message was sent ``logging``; what to log, by CRM."""
    row, mail = MailLogRow, OutboxMessageRow
    due = sa.or_(
        sa.and_(row.status == LogStatus.PENDING, row.next_attempt_at <= now),
        sa.and_(row.status == LogStatus.LOGGING, row.claimed_at <= now - policy.stale_after),
    )
    query = (
        sa.select(row, mail.raw, mail.sent_at)
        .join(mail, mail.idempotency_key == row.mail_key)
        .where(due, row.org_id == org_id, row.crm.in_(crms))
        .where(mail.status == OutboxStatus.SENT.value)
        .order_by(row.id)
        .limit(policy.batch_size)
    )
    claimed: dict[str, list[_Claimed]] = {}
    with store.transaction() as uow:
        if uow.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=row, skip_locked=True)
        for found, raw, sent_at in uow.session.execute(query).all():
            earlier = found.attempts > 0  # an earlier attempt may have written it
            found.status = LogStatus.LOGGING
            found.claimed_at = now
            found.attempts += 1
            item: SentEmail | CrmMeetingsError
            try:
                meeting = uow.meetings.get(found.meeting_id)
                item = sent_email(
                    found.mail_key, raw, meeting, sent_at or now, maybe_logged=earlier
                )
            except CrmMeetingsError as missing:  # e.g. the meeting row is gone
                item = missing
            claimed.setdefault(found.crm, []).append((found.id, found.attempts, item))
    return claimed


def _permanent(error: BaseException) -> bool:
    """Whether the CRM refused the e-mail for good (trying again changes nothing)."""
    if isinstance(error, ValidationError | NotFoundError | PermissionDeniedError | ConflictError):
        return True
    if isinstance(error, RateLimitedError):
        return False
    return (
        isinstance(error, RemoteError)
        and error.status is not None
        and 400 <= error.status < 500
        and error.status not in (401, 403, 408, 429)
    )


def _record(
    store: Store,
    row_id: int,
    now: datetime,
    attempts: int,
    error: BaseException | None,
    result: BatchResult | None,
    policy: OutboxPolicy,
    report: LogReport,
) -> None:
    values: dict[str, object] = {"claimed_at": None}
    if error is None:
        values |= {"status": LogStatus.LOGGED, "logged_at": now, "last_error": None}
        values["crm_activity_id"] = result.record_id if result else None
        bucket = report.logged
    else:
        retry_at = None if _permanent(error) else next_attempt(attempts, now, policy)
        values["last_error"] = redact(f"{type(error).__name__}: {error}")[:_MAX_ERROR]
        if retry_at is None:
            values["status"] = LogStatus.FAILED
            bucket = report.failed
        else:
            values |= {"status": LogStatus.PENDING, "next_attempt_at": retry_at}
            bucket = report.deferred
    with store.transaction() as uow:
        uow.session.execute(
            sa.update(MailLogRow)
            .where(
                MailLogRow.id == row_id,
                MailLogRow.status == LogStatus.LOGGING,
                MailLogRow.claimed_at == now,
            )
            .values(**values)
        )
    bucket.append(row_id)


def _no_answer(result: BatchResult) -> CrmMeetingsError | None:
    return None if result.ok else RemoteError("the CRM gave no reason", vendor="crm")
