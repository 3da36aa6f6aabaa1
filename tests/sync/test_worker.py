"""``crm-meetings worker`` as a real process: schedules the nightly job, stops on SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.routing.requests import RequestStatus, TrustRepository
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import DEFAULT_ORG_ID, Store, create_engine
from crm_meetings.sync.schedule import JOBS_TABLE, NIGHTLY_JOB_ID

MODULE = "crm_meetings.commands.worker"


W = load_module(Path(__file__).with_name("test_jobs_world.py"))


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    yield from W.make_world(tmp_path, sqlite_url, extra="hour = 3\nminute = 45")


def _nightly_next_run(store_url: str) -> float | None:
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            jobs = sa.table(JOBS_TABLE, sa.column("id"), sa.column("next_run_time"))
            return connection.scalar(  # type: ignore[no-any-return]
                sa.select(jobs.c.next_run_time).where(jobs.c.id == NIGHTLY_JOB_ID)
            )
    except sa.exc.OperationalError:
        return None  # the table does not exist yet
    finally:
        engine.dispose()


def _start(world: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, "--outbox-interval", "0.2", *args],
        env=world.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _terminate(process: subprocess.Popen[str]) -> str:
    """SIGTERM: the worker stops cleanly (status 0, no traceback); returns its stderr."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "worker stopped" in err
    assert "Traceback" not in err
    return err


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_the_worker_schedules_the_nightly_job_and_stops_on_sigterm(world: Any) -> None:
    process = _start(world)
    try:
        deadline = time.monotonic() + 30
        next_run = None
        while next_run is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            next_run = _nightly_next_run(world.store_url)
        assert next_run is not None, process.stderr.read() if process.stderr else ""
        fires = datetime.fromtimestamp(next_run, ZoneInfo("Europe/Paris"))
        assert (fires.hour, fires.minute) == (3, 45)
        time.sleep(0.5)  # a few outbox rounds
        err = _terminate(process)
    finally:
        _kill(process)
    assert "SIGTERM" in err


def test_the_worker_refuses_an_unmigrated_database(world: Any, tmp_path: Path) -> None:
    text = world.config.read_text(encoding="utf-8")
    fresh = f"sqlite+pysqlite:///{tmp_path / 'empty.db'}"
    world.config.write_text(text.replace(world.store_url, fresh), encoding="utf-8")
    process = _start(world)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "crm-meetings db upgrade" in err


# --- the scheduling assistant's SMTP listener ------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _connect(port: int, process: subprocess.Popen[str], seconds: float = 30) -> None:
    """Wait until the worker's listener answers on ``port``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.noop()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(process.stderr.read() if process.stderr else "the worker exited")


@pytest.fixture
def inbound_world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    port = _free_port()
    extra = (
        f'\n[web]\nsession_secret = "worker-test-secret"\n\n[inbound]\nenabled = true\n'
        f'port = {port}\nassistant_address = "{ASSISTANT}"\n'
    )
    for world in W.make_world(tmp_path, sqlite_url, extra=extra):
        world.inbound_port = port
        yield world


ASSISTANT = "assistant@sales.example.com"


def _mail(sender: str, cc: str, body: str, msgid: str, reply_to: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ASSISTANT
    message["Cc"] = cc
    message["Subject"] = "Meeting?"
    message["Message-ID"] = msgid
    if reply_to:
        message["In-Reply-To"] = reply_to
    message.set_content(body)
    return message


def test_the_worker_runs_the_inbound_listener_and_stops_it_on_sigterm(
    inbound_world: Any,
) -> None:
    world = inbound_world
    owner = world.data.users[0].email  # a Zoom user of the seed
    requester = "bea@" + owner.split("@")[1]  # the owner's domain: trusted
    with Store(world.store_url) as store, store.transaction() as uow:
        uow.repository(TrustRepository).signup(DEFAULT_ORG_ID, owner)
    process = _start(world)
    try:
        _connect(world.inbound_port, process)
        with smtplib.SMTP("127.0.0.1", world.inbound_port, timeout=10) as client:
            client.send_message(_mail(requester, owner, "Could we meet?", "<ask@x.example>"))
            with Store(world.store_url) as store, store.transaction() as uow:
                (request,) = uow.repository(TrustRepository).queue(owner, None)
                offer = uow.session.execute(
                    sa.select(OutboxMessageRow.message_id, OutboxMessageRow.raw).where(
                        OutboxMessageRow.recipient == requester
                    )
                ).one()
            assert request.status is RequestStatus.ACCEPTED
            text = offer.raw.decode("ascii").replace("=\r\n", "")
            choice = next(line for line in text.splitlines() if line.startswith("- "))
            client.send_message(
                _mail(requester, owner, choice, "<pick@x.example>", reply_to=offer.message_id)
            )
        with Store(world.store_url) as store, store.transaction() as uow:
            mine = uow.meetings.list_by_organizer(owner, org_id=DEFAULT_ORG_ID)
        [meeting] = [m for m in mine if requester in {i.email for i in m.invitees}]
        assert [i.email for i in meeting.invitees] == [requester]
        assert meeting.crm_record_id  # scheduled in the CRM by the worker
        _terminate(process)
    finally:
        _kill(process)
    port = world.inbound_port
    with pytest.raises(ConnectionRefusedError), smtplib.SMTP("127.0.0.1", port, timeout=5):
        pass  # the listener is gone with the worker


def test_the_worker_names_a_busy_inbound_port(inbound_world: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", inbound_world.inbound_port))
        taken.listen()
        process = _start(inbound_world)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "inbound.port" in err
    assert "Traceback" not in err
