"""The process the crash suite kills: one history sync or one ``schedule``, for real.

Run as ``python child.py CONFIG.json`` by ``test_crash.py``. It talks to the parent's
sandbox over HTTPS (the same harnesses the contract and action suites use, given a stand-in
that answers with the parent's URLs and tokens) and to the parent's store. At every step
boundary it writes ``step NAME`` on stdout and waits for ``go`` on stdin, so the parent can
SIGKILL it exactly there, or a seeded moment after letting it go on.
"""

from __future__ import annotations

import importlib.util
import json
import ssl
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

TESTS = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


def step(name: str) -> None:
    sys.stdout.write(f"step {name}\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit(3)


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    remote = Remote(config)
    crm, provider_name = config["crm"], config["provider"]
    harness = _load(TESTS / "contract" / f"harness_{crm}.py", f"child_harness_{crm}")
    providers = _load(TESTS / "conferencing" / "conftest.py", "child_providers")
    build = providers.build_zoom if provider_name == "zoom" else providers.build_goto

    from crm_meetings.model import CrmKind
    from crm_meetings.store import Store

    now = datetime.fromisoformat(config["now"])

    def clock() -> datetime:
        return now

    if config["mode"] == "deliver":
        deliver(config, clock)
        return
    connector = harness.make_connector(remote)
    provider = build(remote, [])
    store = Store(config["store_url"], clock=clock)
    try:
        if config["mode"] == "sync":
            from crm_meetings.sync.engine import HistorySync, SyncOptions

            write = connector.write_history_many

            def write_many(batch: Any) -> Any:
                step("crm.write")
                results = write(batch)
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
            outcome = {"status": report.status.value, "written": report.counters.sessions_written}
        else:
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
            outcome = {"uid": result.meeting.uid, "replayed": result.replayed}
    finally:
        provider.close()
        connector.close()
        store.dispose()
    sys.stdout.write("done " + json.dumps(outcome) + "\n")
    sys.stdout.flush()


def deliver(config: dict[str, Any], clock: Any) -> None:
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
    sys.stdout.write("done " + json.dumps({"sent": len(report.sent)}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
