"""The outbox against a real SMTP server (aiosmtpd on 127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import typer
from aiosmtpd.controller import Controller
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import Result
from typer.testing import CliRunner

from crm_meetings.calendar import ics, imip
from crm_meetings.calendar.imip import OutgoingMail, Sender
from crm_meetings.calendar.outbox import (
    Outbox,
    OutboxPolicy,
    OutboxStatus,
    SmtpConfig,
    classify,
    connect,
    deliver_pending,
    next_attempt,
)
from crm_meetings.commands import CliState
from crm_meetings.commands.outbox import app as outbox_app
from crm_meetings.model import Meeting
from crm_meetings.store import Store, create_engine, upgrade
from crm_meetings.store.tables import Base

SENDER = Sender("meetings@acme.example", "Acme Meetings")
POLICY = OutboxPolicy(max_attempts=3, base=timedelta(minutes=1), stale_after=timedelta(minutes=5))


@dataclass
class Sink:
    """An aiosmtpd handler that keeps what it accepted and answers from a script."""

    received: list[bytes] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # popped per message; "" = accept

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = self.answers.pop(0) if self.answers else ""
        if answer:
            return answer
        self.received.append(bytes(envelope.original_content or envelope.content))
        return "250 2.0.0 Accepted"

    def message_ids(self) -> Counter[str]:
        return Counter(str(parse(raw)["Message-ID"]) for raw in self.received)


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    port: int
    sink: Sink = field(default_factory=Sink)
    controller: Controller | None = None

    @property
    def config(self) -> SmtpConfig:
        return SmtpConfig(host="127.0.0.1", port=self.port, security="none", timeout=5)

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A server that is not listening yet: call ``start()``."""
    server = SmtpServer(free_port())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.start()
    return smtp_server


@pytest.fixture
def mails(meeting: Meeting, now: datetime) -> list[OutgoingMail]:
    return imip.compose(meeting, ics.plan_new(meeting), sender=SENDER, now=now)


def queue(store: Store, mails: list[OutgoingMail]) -> int:
    with store.transaction() as uow:
        return Outbox.enqueue_all(uow, mails)


def statuses(store: Store) -> dict[str, OutboxStatus]:
    with store.transaction() as uow:
        return {entry.recipient: entry.status for entry in Outbox.list(uow)}


def test_enqueue_is_idempotent_on_the_key(store: Store, mails: list[OutgoingMail]) -> None:
    with store.transaction() as uow:
        assert Outbox.enqueue(uow, mails[0]) is True
        assert Outbox.enqueue(uow, mails[0]) is False
    assert queue(store, mails) == 1
    with store.transaction() as uow:
        entries = Outbox.list(uow)
    assert len(entries) == 2
    assert {e.status for e in entries} == {OutboxStatus.QUEUED}


def test_one_insert_tells_new_from_known_and_repeated_keys(
    store: Store, mails: list[OutgoingMail]
) -> None:
    first, second = mails
    queue(store, [first])
    with store.transaction() as uow:
        assert Outbox.enqueue_many(uow, [first, second, second]) == [False, True, False]
        assert Outbox.enqueue_many(uow, []) == []
    with store.transaction() as uow:
        assert sorted(e.recipient for e in Outbox.list(uow)) == sorted(m.recipient for m in mails)


def test_a_rolled_back_change_queues_nothing(store: Store, mails: list[OutgoingMail]) -> None:
    def change_that_fails() -> None:
        with store.transaction() as uow:
            Outbox.enqueue_all(uow, mails)
            raise RuntimeError("the CRM write failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    with store.transaction() as uow:
        assert Outbox.list(uow) == []


def test_delivered_messages_arrive_byte_for_byte(
    store: Store, smtp: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    queue(store, mails)

    report = deliver_pending(store, smtp.config, clock.now, policy=POLICY)

    assert len(report.sent) == 2
    assert sorted(smtp.sink.received) == sorted(m.raw for m in mails)
    message = parse(smtp.sink.received[0])
    assert message["Message-ID"] in {m.message_id for m in mails}
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "REQUEST"
    assert set(statuses(store).values()) == {OutboxStatus.SENT}
    assert deliver_pending(store, smtp.config, clock.advance(hours=1), policy=POLICY).attempted == 0
    assert len(smtp.sink.received) == 2


def test_smtp_down_then_up_delivers_each_message_once(
    store: Store, smtp_server: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    queue(store, mails)

    down = deliver_pending(store, smtp_server.config, clock.now, policy=POLICY)

    assert len(down.deferred) == 2
    with store.transaction() as uow:
        entries = Outbox.list(uow)
    assert {e.status for e in entries} == {OutboxStatus.QUEUED}
    assert all("ConnectionRefusedError" in (e.last_error or "") for e in entries)
    assert {e.next_attempt_at for e in entries} == {clock.now + timedelta(minutes=1)}
    smtp_server.start()
    assert deliver_pending(store, smtp_server.config, clock.now, policy=POLICY).attempted == 0

    up = deliver_pending(store, smtp_server.config, clock.advance(minutes=1), policy=POLICY)

    assert len(up.sent) == 2
    assert smtp_server.sink.message_ids() == Counter({m.message_id: 1 for m in mails})
    deliver_pending(store, smtp_server.config, clock.advance(hours=1), policy=POLICY)
    assert len(smtp_server.sink.received) == 2


def test_queued_before_a_crash_is_sent_after_restart(
    store_url: str, smtp: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    upgrade(store_url)
    with Store(store_url, clock=clock) as first_process:
        queue(first_process, mails)  # committed; the process dies before delivering
    with Store(store_url, clock=clock) as restarted:
        report = deliver_pending(restarted, smtp.config, clock.advance(seconds=30), policy=POLICY)
    assert len(report.sent) == 2
    assert smtp.sink.message_ids() == Counter({m.message_id: 1 for m in mails})


class Crash(BaseException):
    """The process dies (not an error anyone handles)."""


def test_a_sender_that_died_mid_send_is_retried_once_with_the_same_message_id(
    store: Store, smtp: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    queue(store, mails[:1])

    def connect_then_die(config: SmtpConfig) -> smtplib.SMTP:
        client = connect(config)
        real_sendmail = client.sendmail

        def sendmail(*args: Any, **kwargs: Any) -> Any:
            real_sendmail(*args, **kwargs)
            client.close()
            raise Crash  # handed to the server, never marked sent

        client.sendmail = sendmail  # type: ignore[method-assign]
        return client

    with pytest.raises(Crash):
        deliver_pending(store, smtp.config, clock.now, policy=POLICY, connect_smtp=connect_then_die)
    assert statuses(store) == {mails[0].recipient: OutboxStatus.SENDING}
    early = deliver_pending(store, smtp.config, clock.advance(minutes=4), policy=POLICY)
    assert early.attempted == 0  # the claim is not stale yet

    late = deliver_pending(store, smtp.config, clock.advance(minutes=1), policy=POLICY)

    assert len(late.sent) == 1
    assert smtp.sink.message_ids() == Counter({mails[0].message_id: 2})  # one recognisable dup
    assert statuses(store) == {mails[0].recipient: OutboxStatus.SENT}


def test_a_temporary_4xx_is_retried_later(
    store: Store, smtp: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    queue(store, mails[:1])
    smtp.sink.answers = ["451 4.3.0 Try again later"]

    first = deliver_pending(store, smtp.config, clock.now, policy=POLICY)
    assert len(first.deferred) == 1
    with store.transaction() as uow:
        (entry,) = Outbox.list(uow)
    assert entry.status is OutboxStatus.QUEUED
    assert entry.attempts == 1
    assert entry.last_error == "451 4.3.0 Try again later"

    second = deliver_pending(store, smtp.config, clock.advance(minutes=1), policy=POLICY)
    assert len(second.sent) == 1
    assert smtp.sink.message_ids() == Counter({mails[0].message_id: 1})


def test_a_permanent_5xx_is_failed_visible_and_retryable(
    store: Store, smtp: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    queue(store, mails[:1])
    smtp.sink.answers = ["550 5.1.1 No such user"]

    report = deliver_pending(store, smtp.config, clock.now, policy=POLICY)

    assert len(report.failed) == 1
    with store.transaction() as uow:
        (entry,) = Outbox.list(uow, status=OutboxStatus.FAILED)
    assert entry.last_error == "550 5.1.1 No such user"
    assert entry.recipient == mails[0].recipient
    assert deliver_pending(store, smtp.config, clock.advance(days=1), policy=POLICY).attempted == 0

    with store.transaction() as uow:
        assert Outbox.retry(uow) == 1
    assert len(deliver_pending(store, smtp.config, clock.now, policy=POLICY).sent) == 1
    assert smtp.sink.message_ids() == Counter({mails[0].message_id: 1})


def test_temporary_failures_give_up_after_max_attempts(
    store: Store, smtp_server: SmtpServer, mails: list[OutgoingMail], clock: Any
) -> None:
    queue(store, mails[:1])
    for _ in range(POLICY.max_attempts):
        deliver_pending(store, smtp_server.config, clock.advance(hours=3), policy=POLICY)
    with store.transaction() as uow:
        (entry,) = Outbox.list(uow)
    assert entry.status is OutboxStatus.FAILED
    assert entry.attempts == POLICY.max_attempts


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "sent"),
        (smtplib.SMTPResponseException(451, b"later"), "temporary"),
        (smtplib.SMTPDataError(554, b"rejected"), "permanent"),
        (smtplib.SMTPRecipientsRefused({"a@x.example": (550, b"no")}), "permanent"),
        (smtplib.SMTPRecipientsRefused({"a@x.example": (452, b"full")}), "temporary"),
        (smtplib.SMTPServerDisconnected("gone"), "temporary"),
        (ConnectionRefusedError(111, "refused"), "temporary"),
        (TimeoutError("slow"), "temporary"),
    ],
)
def test_classify(error: BaseException | None, outcome: str) -> None:
    assert classify(error) == outcome


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(1, timedelta(minutes=1)), (2, timedelta(minutes=2)), (3, None)],
)
def test_next_attempt_backs_off_then_gives_up(
    attempts: int, wait: timedelta | None, now: datetime
) -> None:
    expected = None if wait is None else now + wait
    assert next_attempt(attempts, now, POLICY) == expected


def test_backoff_is_capped(now: datetime) -> None:
    policy = OutboxPolicy(max_attempts=100, cap=timedelta(hours=2))
    assert next_attempt(60, now, policy) == now + timedelta(hours=2)


@pytest.fixture
def cli(tmp_path: Path, sqlite_url: str) -> Callable[..., Result]:
    """Run ``crm-meetings outbox …`` against a migrated SQLite store."""
    upgrade(sqlite_url)
    config = tmp_path / "crm-meetings.toml"
    config.write_text(f'[store]\nurl = "{sqlite_url}"\n', encoding="utf-8")
    root = typer.Typer()

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = CliState(config_path=config, env={})

    root.add_typer(outbox_app, name="outbox")

    def run(*args: str) -> Result:
        return CliRunner().invoke(root, ["outbox", *args], env={"COLUMNS": "200"})

    return run


def test_outbox_list_and_retry_commands(
    cli: Callable[..., Result], sqlite_url: str, smtp: SmtpServer, mails: list[OutgoingMail]
) -> None:
    assert "The outbox is empty." in cli("list").output
    with Store(sqlite_url) as store:
        queue(store, mails[:1])
        smtp.sink.answers = ["550 5.1.1 [No such user]"]
        deliver_pending(store, smtp.config, datetime.now(UTC), policy=POLICY)

    listed = cli("list", "--status", "failed")
    assert listed.exit_code == 0, listed.output
    assert "failed" in listed.output
    assert "ann@client.example" in listed.output
    assert "550 5.1.1 [No such user]" in listed.output  # brackets shown, not taken as markup

    retried = cli("retry")
    assert retried.exit_code == 0, retried.output
    assert "1 failed message queued again." in retried.output
    assert "queued" in cli("list").output


def only_outbox(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
    table = obj if kind == "table" else obj.table
    return bool(table.name == "outbox_messages")


def test_migration_0002_matches_the_outbox_model(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": only_outbox,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
