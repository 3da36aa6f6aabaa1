"""The processes the crash suite kills: one history sync, one ``schedule`` or one outbox
delivery, for real, each in a process forked from a warm server.

``python child.py serve FD`` starts the server: it imports everything a run needs (the
package, the SDKs, the harnesses) once, says ``ready`` on the control socket FD, then for
each request — a config file's path, sent with one end of a fresh socket pair
(SCM_RIGHTS) — forks a worker and answers ``pid N``; asked ``wait``, it reaps the worker
and answers ``exit CODE`` (negative: killed by that signal). The parent may SIGKILL the pid
until then: a worker that already ended is a zombie, its pid not reused. Forking a warm,
single-threaded process costs milliseconds where a fresh interpreter spent a second or
more importing, so the suite can afford a hundred kill points.

A worker talks to the parent's sandbox over HTTPS (the same harnesses the contract and
action suites use, given a stand-in that answers with the parent's URLs and tokens) and to
the parent's store. At every step boundary it writes ``step NAME`` on its socket and waits
for ``go``, so the parent can SIGKILL it exactly there, or a seeded moment after letting
it go on; at the end it writes ``done {json}``.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from crm_meetings.sandbox.testing import load_module

TESTS = Path(__file__).resolve().parent.parent


@dataclass
class Remote:
    """What the harnesses ask of a :class:`Sandbox`, answered from the parent's values."""

    config: dict[str, Any]

    @property
    def ca_path(self) -> Path:
        return Path(self.config["ca_path"])

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.config["ca_path"])

    def url(self, vendor: str) -> str:
        return str(self.config["vendors"][vendor]["url"])

    def token(self, vendor: str) -> str:
        return str(self.config["vendors"][vendor]["token"])

    def refresh_token(self, vendor: str, subject: str | None = None) -> str:
        return str(self.config["vendors"][vendor]["refresh"])

    def stop(self) -> None:
        return None


Step = Callable[[str], None]
HARNESSES: dict[str, ModuleType] = {}
PROVIDERS: dict[str, ModuleType] = {}


def preload() -> None:
    """Everything a worker imports, imported once in the server before any fork."""
    for crm in ("salesforce", "hubspot", "zoho"):
        HARNESSES[crm] = load_module(
            TESTS / "contract" / f"harness_{crm}.py", f"child_harness_{crm}"
        )
    PROVIDERS["all"] = load_module(TESTS / "conferencing" / "conftest.py", "child_providers")
    import smtplib  # noqa: F401

    import sqlalchemy.orm

    import crm_meetings.actions
    import crm_meetings.calendar.outbox
    import crm_meetings.store
    import crm_meetings.sync.engine  # noqa: F401

    sqlalchemy.orm.configure_mappers()


def stepper(lines: IO[str], answers: IO[str]) -> Step:
    def step(name: str) -> None:
        answers.write(f"step {name}\n")
        answers.flush()
        if lines.readline().strip() != "go":
            raise SystemExit(3)

    return step


def run(config: dict[str, Any], step: Step) -> dict[str, Any]:
    """One sync, schedule or delivery as ``config`` says; what it reports at the end."""
    remote = Remote(config)
    crm, provider_name = config["crm"], config["provider"]
    harness = HARNESSES[crm]
    providers = PROVIDERS["all"]
    build = providers.build_zoom if provider_name == "zoom" else providers.build_goto

    from crm_meetings.model import CrmKind
    from crm_meetings.store import Store

    now = datetime.fromisoformat(config["now"])

    def clock() -> datetime:
        return now

    if config["mode"] == "deliver":
        return deliver(config, clock, step)
    connector = harness.make_connector(remote)
    provider = build(remote, [])
    store = Store(config["store_url"], clock=clock)
    try:
        if config["mode"] == "sync":
            from crm_meetings.sync.engine import HistorySync, SyncOptions

            write = connector.write_history_many

            def write_many(batch: Any, **options: Any) -> Any:  # options: the engine's run
                step("crm.write")
                results = write(batch, **options)
                step("crm.written")
                return results

            connector.write_history_many = write_many  # type: ignore[method-assign]
            engine = HistorySync(
                store,
                provider,
                {CrmKind(crm): connector},
                clock=clock,
                options=SyncOptions(first_window=timedelta(days=60)),
            )
            report = engine.sync_organizer(
                config["organizer"], progress=lambda done, total: step(f"meeting {done}")
            )
            return {"status": report.status.value, "written": report.counters.sessions_written}
        from crm_meetings.actions import ActionContext, ScheduleRequest, schedule
        from crm_meetings.model import Invitee, Person, RecordRef

        asked = config["schedule"]
        request = ScheduleRequest(
            idempotency_key=asked["key"],
            subject=asked["subject"],
            start=datetime.fromisoformat(asked["start"]),
            end=datetime.fromisoformat(asked["end"]),
            timezone=asked["timezone"],
            invitees=tuple(Invitee(email, name) for email, name in asked["invitees"]),
            related=tuple(RecordRef(*ref) for ref in asked["related"]),
            description=asked["description"],
        )
        ctx = ActionContext(
            store=store,
            connector=connector,
            provider=provider,
            actor=Person(*config["actor"]),
            clock=clock,
            hook=lambda action, boundary: step(boundary),
        )
        result = schedule(ctx, request)
        return {"uid": result.meeting.uid, "replayed": result.replayed}
    finally:
        provider.close()
        connector.close()
        store.dispose()


def work(config_path: str, channel: socket.socket) -> int:
    """A forked worker: run, report ``done``, and say how to exit (never returns to the
    server's loop)."""
    try:
        with (
            channel,
            channel.makefile("r", encoding="utf-8") as lines,
            channel.makefile("w", encoding="utf-8") as answers,
        ):
            config = json.loads(Path(config_path).read_text(encoding="utf-8"))
            outcome = run(config, stepper(lines, answers))
            answers.write("done " + json.dumps(outcome) + "\n")
            answers.flush()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def serve(control: socket.socket) -> None:
    """Fork one worker per request until the parent closes the control socket."""
    preload()
    replies = control.makefile("w", encoding="utf-8")
    replies.write("ready\n")
    replies.flush()
    pid = 0
    while True:
        message, fds, _, _ = socket.recv_fds(control, 4096, 1)
        if not message:
            return
        if message == b"wait\n":  # reaped only now: until then its pid stays its own
            _, status = os.waitpid(pid, 0)
            replies.write(f"exit {os.waitstatus_to_exitcode(status)}\n")
            replies.flush()
            continue
        assert len(fds) == 1, "each request carries one end of a socket pair"
        assert threading.active_count() == 1, "fork only from a single-threaded server"
        pid = os.fork()
        if pid == 0:
            replies.close()
            control.close()
            code = work(message.decode("utf-8").strip(), socket.socket(fileno=fds[0]))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        os.close(fds[0])
        replies.write(f"pid {pid}\n")
        replies.flush()


def deliver(config: dict[str, Any], clock: Any, step: Step) -> dict[str, Any]:
    """``deliver_pending`` once, stopping before and after each SMTP hand-over."""
    import smtplib

    from crm_meetings.calendar.outbox import SmtpConfig, connect, deliver_pending
    from crm_meetings.store import Store

    def connect_stepping(smtp: SmtpConfig) -> smtplib.SMTP:
        client = connect(smtp)
        sendmail = client.sendmail

        def send(*args: Any, **kwargs: Any) -> Any:
            step("smtp.send")
            answer = sendmail(*args, **kwargs)
            step("smtp.sent")
            return answer

        client.sendmail = send  # type: ignore[method-assign]
        return client

    smtp = SmtpConfig(host="127.0.0.1", port=config["smtp_port"], security="none", timeout=5)
    with Store(config["store_url"], clock=clock) as store:
        report = deliver_pending(store, smtp, clock(), connect_smtp=connect_stepping)
    return {"sent": len(report.sent)}


if __name__ == "__main__":
    assert sys.argv[1] == "serve", "usage: child.py serve FD"
    serve(socket.socket(fileno=int(sys.argv[2])))
