"""The transactional mail outbox: queue with the state change, deliver over SMTP later.

``Outbox.enqueue(uow, mail)`` adds a message inside the caller's unit of work, so the
message exists if and only if the change that caused it was committed. Enqueueing the
same (UID, SEQUENCE, METHOD, recipient) again is a no-op.

:func:`deliver_pending` claims due messages (``queued → sending``, one transaction),
sends each over SMTP and records each outcome in a transaction of its own:

* accepted → ``sent``;
* temporary failure (4xx, connection refused or lost, timeout) → ``queued`` again with a
  later ``next_attempt_at`` (:func:`next_attempt`), until ``max_attempts``;
* permanent failure (5xx) → ``failed`` with the server's answer, shown by
  ``crm-meetings outbox list`` and put back by ``outbox retry``.

A sender that dies after claiming leaves rows in ``sending``; once ``stale_after`` has
passed they are claimed again. If the first sender had already handed the message to the
server, the recipient gets it twice, with the same Message-ID: at most one duplicate per
crash, recognisable as such.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Literal, cast

import sqlalchemy as sa

from crm_meetings.calendar.imip import OutgoingMail
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.model import utc
from crm_meetings.redaction import redact
from crm_meetings.store.statements import insert_ignoring

if TYPE_CHECKING:
    from crm_meetings.config import SmtpSettings
    from crm_meetings.store import Store, UnitOfWork

__all__ = [
    "DeliveryReport",
    "Outbox",
    "OutboxEntry",
    "OutboxPolicy",
    "OutboxStatus",
    "SmtpConfig",
    "classify",
    "deliver_pending",
    "next_attempt",
]

Security = Literal["none", "starttls", "tls"]
_MAX_ERROR: Final = 2000


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """Retry bounds: backoff ``base * 2**(attempt-1)`` capped at ``cap``."""

    max_attempts: int = 8
    base: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=2)
    stale_after: timedelta = timedelta(minutes=10)
    batch_size: int = 100


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send; ``security`` is ``none``, ``starttls`` or ``tls`` (SMTPS)."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: SmtpSettings) -> SmtpConfig:
        """From ``[smtp]``; the caller checks ``settings.host`` is set."""
        password = settings.password.get_secret_value() if settings.password else None
        return cls(
            host=settings.host or "localhost",
            port=settings.effective_port,
            security=settings.security,
            username=settings.username,
            password=password,
            timeout=settings.timeout,
        )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A queued message as ``outbox list`` shows it (without its bytes)."""

    id: int
    status: OutboxStatus
    recipient: str
    subject: str
    method: str
    sequence: int
    meeting_uid: str
    message_id: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(slots=True)
class DeliveryReport:
    """What one :func:`deliver_pending` call did, by outbox row id."""

    sent: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.sent) + len(self.deferred) + len(self.failed)


#: the queueing INSERT, built once: its rows are bound at execution
_QUEUE: Final = insert_ignoring(
    cast(sa.Table, OutboxMessageRow.__table__),
    ["idempotency_key"],
    returning=OutboxMessageRow.__table__.c.idempotency_key,
)


class Outbox:
    """Queue, list and retry messages; every method works inside the caller's transaction."""

    @staticmethod
    def enqueue(uow: UnitOfWork, mail: OutgoingMail) -> bool:
        """Queue ``mail``; ``False`` when a message with its key is already queued or sent."""
        return Outbox.enqueue_many(uow, [mail]) == [True]

    @staticmethod
    def enqueue_all(uow: UnitOfWork, mails: Sequence[OutgoingMail]) -> int:
        """Queue every message; returns how many were new."""
        return sum(Outbox.enqueue_many(uow, mails))

    @staticmethod
    def enqueue_many(uow: UnitOfWork, mails: Sequence[OutgoingMail]) -> list[bool]:
        """Queue every message with one INSERT; per message, whether it was new (a key
        already queued or sent, or earlier in ``mails``, is not). The statement is built
        once (:data:`_QUEUE`): SQLAlchemy sends the rows as one multi-row INSERT."""
        if not mails:
            return []
        now = utc(uow.clock(), "now")
        rows = [
            {
                "idempotency_key": mail.idempotency_key,
                "meeting_uid": mail.meeting_uid,
                "method": mail.method.value,
                "sequence": mail.sequence,
                "recipient": mail.recipient,
                "sender": mail.sender,
                "subject": mail.subject,
                "message_id": mail.message_id,
                "raw": mail.raw,
                "status": OutboxStatus.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for mail in mails
        ]
        fresh = set(uow.session.scalars(_QUEUE.on(uow.session), rows))
        new: list[bool] = []
        for mail in mails:
            new.append(mail.idempotency_key in fresh)
            fresh.discard(mail.idempotency_key)
        return new

    @staticmethod
    def list(
        uow: UnitOfWork, *, status: OutboxStatus | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Newest first, optionally only one status."""
        query = sa.select(OutboxMessageRow).order_by(OutboxMessageRow.id.desc()).limit(limit)
        if status is not None:
            query = query.where(OutboxMessageRow.status == status.value)
        return [_entry(row) for row in uow.session.scalars(query)]

    @staticmethod
    def retry(uow: UnitOfWork, ids: Sequence[int] | None = None) -> int:
        """Put failed messages (all, or those in ``ids``) back in the queue, due now."""
        query = (
            sa.update(OutboxMessageRow)
            .where(OutboxMessageRow.status == OutboxStatus.FAILED.value)
            .values(
                status=OutboxStatus.QUEUED.value,
                attempts=0,
                next_attempt_at=utc(uow.clock(), "now"),
                claimed_at=None,
            )
        )
        if ids is not None:
            query = query.where(OutboxMessageRow.id.in_(list(ids)))
        result = uow.session.execute(query)
        return int(getattr(result, "rowcount", 0))


# --- decisions, as pure functions ------------------------------------------------------


Outcome = Literal["sent", "temporary", "permanent"]


def classify(error: BaseException | None) -> Outcome:
    """How a send ended: SMTP 5xx is permanent; 4xx and network trouble are temporary."""
    if error is None:
        return "sent"
    code = _smtp_code(error)
    if code is not None:
        return "permanent" if 500 <= code < 600 else "temporary"
    return "temporary"


def next_attempt(attempts: int, now: datetime, policy: OutboxPolicy) -> datetime | None:
    """When to try again after ``attempts`` failed tries, or ``None`` to give up."""
    if attempts >= policy.max_attempts:
        return None
    doublings = min(max(0, attempts - 1), 32)
    return now + min(policy.cap, policy.base * (1 << doublings))


def _smtp_code(error: BaseException) -> int | None:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return max(codes) if codes else None
    if isinstance(error, smtplib.SMTPResponseException):
        return int(error.smtp_code)
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = [f"{code} {_text(reply)}" for code, reply in error.recipients.values()]
        text = "recipient refused: " + "; ".join(answers)
    elif isinstance(error, smtplib.SMTPResponseException):
        text = f"{error.smtp_code} {_text(error.smtp_error)}"
    else:
        text = f"{type(error).__name__}: {error}"
    return redact(text)[:_MAX_ERROR]


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


# --- delivery ---------------------------------------------------------------------------


Connect = Callable[[SmtpConfig], smtplib.SMTP]


def connect(config: SmtpConfig) -> smtplib.SMTP:
    """An SMTP connection, TLS and login done as configured."""
    context = config.ssl_context or ssl.create_default_context()
    client: smtplib.SMTP
    if config.security == "tls":
        client = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
    else:
        client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    try:
        if config.security == "starttls":
            client.starttls(context=context)
        if config.username:
            client.login(config.username, config.password or "")
    except BaseException:
        client.close()
        raise
    return client


def deliver_pending(
    store: Store,
    smtp: SmtpConfig,
    now: datetime,
    *,
    policy: OutboxPolicy = OutboxPolicy(),
    connect_smtp: Connect = connect,
) -> DeliveryReport:
    """Send every due message once; record each outcome in its own transaction."""
    now = utc(now, "now")
    report = DeliveryReport()
    claimed = _claim(store, now, policy)
    if not claimed:
        return report
    client: smtplib.SMTP | None = None
    unreachable: BaseException | None = None  # once connecting failed, defer the rest
    try:
        for row_id, claimed_at, attempts, sender, recipient, raw in claimed:
            error = unreachable
            if error is None:
                try:
                    if client is None:
                        client = _connected(connect_smtp, smtp)
                    client.sendmail(sender, [recipient], raw)
                except _Unreachable as exc:
                    error = unreachable = exc.__cause__ or exc
                except (smtplib.SMTPException, OSError) as exc:
                    error = exc
                    if not isinstance(exc, smtplib.SMTPResponseException) or exc.smtp_code == 421:
                        _drop(client)
                        client = None
            _record(store, row_id, claimed_at, attempts, error, now, policy, report)
    finally:
        _drop(client, quit=True)
    return report


_Claim = tuple[int, datetime, int, str, str, bytes]


class _Unreachable(Exception):
    """Connecting (or TLS, or login) failed; ``__cause__`` says why."""


def _connected(connect_smtp: Connect, smtp: SmtpConfig) -> smtplib.SMTP:
    try:
        return connect_smtp(smtp)
    except (smtplib.SMTPException, OSError) as error:
        raise _Unreachable from error


def _claim(store: Store, now: datetime, policy: OutboxPolicy) -> list[_Claim]:
    """Mark due rows ``sending`` (ours until ``stale_after``) and return what to send."""
    row = OutboxMessageRow
    due = sa.or_(
        sa.and_(row.status == OutboxStatus.QUEUED.value, row.next_attempt_at <= now),
        sa.and_(
            row.status == OutboxStatus.SENDING.value,
            row.claimed_at <= now - policy.stale_after,
        ),
    )
    with store.transaction() as uow:
        query = sa.select(row).where(due).order_by(row.id).limit(policy.batch_size)
        if uow.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = list(uow.session.scalars(query))
        for found in rows:
            found.status = OutboxStatus.SENDING.value
            found.claimed_at = now
            found.attempts += 1
        return [(r.id, now, r.attempts, r.sender, r.recipient, r.raw) for r in rows]


def _record(
    store: Store,
    row_id: int,
    claimed_at: datetime,
    attempts: int,
    error: BaseException | None,
    now: datetime,
    policy: OutboxPolicy,
    report: DeliveryReport,
) -> None:
    outcome = classify(error)
    retry_at = next_attempt(attempts, now, policy) if outcome == "temporary" else None
    values: dict[str, object]
    if outcome == "sent":
        values = {"status": OutboxStatus.SENT.value, "sent_at": now, "last_error": None}
        bucket = report.sent
    elif retry_at is not None:
        values = {"status": OutboxStatus.QUEUED.value, "next_attempt_at": retry_at}
        bucket = report.deferred
    else:
        values = {"status": OutboxStatus.FAILED.value}
        bucket = report.failed
    if error is not None:
        values["last_error"] = _describe(error)
    values["claimed_at"] = None
    with store.transaction() as uow:
        uow.session.execute(
            sa.update(OutboxMessageRow)
            .where(
                OutboxMessageRow.id == row_id,
                OutboxMessageRow.status == OutboxStatus.SENDING.value,
                OutboxMessageRow.claimed_at == claimed_at,
            )
            .values(**values)
        )
    bucket.append(row_id)


def _drop(client: smtplib.SMTP | None, *, quit: bool = False) -> None:
    """Close ``client``, politely with QUIT when asked."""
    if client is None:
        return
    try:
        if quit:
            client.quit()
        else:
            client.close()
    except (smtplib.SMTPException, OSError):
        client.close()


def _entry(row: OutboxMessageRow) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        status=OutboxStatus(row.status),
        recipient=row.recipient,
        subject=row.subject,
        method=row.method,
        sequence=row.sequence,
        meeting_uid=row.meeting_uid,
        message_id=row.message_id,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )
