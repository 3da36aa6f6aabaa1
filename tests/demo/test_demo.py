"""`crm-meetings demo` as a real subprocess, and what it leaves in --out.

The demo runs once per module; every test reads what it wrote: report.json, the mail the
SMTP sink received (mail/*.eml), the calendars offered for download (ics/*.ics).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from typer.testing import CliRunner

from crm_meetings import cli
from crm_meetings.commands import DemoRun
from crm_meetings.demo import _with_system, step_start_sandbox, step_stop
from crm_meetings.demo.people import ORG_ADDRESS
from crm_meetings.demo.system import DemoSystem
from crm_meetings.demo.web import PAGES, get_signed_in

SCRIPT = Path(sys.executable).with_name("crm-meetings")
CRMS = ("salesforce", "hubspot", "zoho")
STEPS = [
    "create store",
    "migrate",
    "start sandbox",
    "meeting life cycle",
    "mail and calendar files",
    "history sync",
    "sync now never started",
    "organisation address",
    "rotation",
    "booking requests",
    "contacts",
    "web pages",
    "stop",
]


@dataclass(frozen=True)
class Demo:
    out: Path
    result: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "report.json").read_text("utf-8"))
        return data

    def mail(self) -> list[Path]:
        return sorted((self.out / "mail").glob("*.eml"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    out = tmp_path_factory.mktemp("demo") / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MEETINGS_")}
    env.update({"COLUMNS": "120", "NO_COLOR": "1"})
    began = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), "demo", "--out", str(out)],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return Demo(out, result, time.monotonic() - began)


def parse(path: Path) -> EmailMessage:
    message = message_from_bytes(path.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    return message


def calendar_of(message: EmailMessage) -> tuple[str, Calendar] | None:
    """The ``method`` parameter and the parsed body of the text/calendar part."""
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return str(part.get_param("method")), Calendar.from_ical(payload)
    return None


def event_of(calendar: Calendar) -> Any:
    (event,) = calendar.walk("VEVENT")
    return event


def test_the_demo_exits_0_in_well_under_a_minute_with_every_step_ok(demo: Demo) -> None:
    assert demo.result.returncode == 0, demo.result.stdout + demo.result.stderr
    assert demo.seconds < 45, f"the demo took {demo.seconds:.1f} s"
    report = demo.report
    assert report["ok"] is True
    assert [step["step"] for step in report["steps"]] == STEPS
    assert all(step["ok"] and step["detail"] for step in report["steps"])
    for shown in ("Meeting life cycle on each CRM", "Run report", "No session exists"):
        assert shown in demo.result.stdout


def test_every_mail_file_is_an_email_whose_calendar_method_is_in_its_name(demo: Demo) -> None:
    files = demo.mail()
    assert len(files) >= 36  # 3 CRMs x (2 + 2 + 3 + 3 + 2) for the life cycles alone
    numbers = [int(path.name.split("-")[0]) for path in files]
    assert numbers == list(range(1, len(files) + 1))
    kinds: set[str] = set()
    for path in files:
        _, kind, recipient = path.stem.split("-", 2)
        kinds.add(kind)
        message = parse(path)
        assert recipient in str(message["To"]), path.name
        found = calendar_of(message)
        if kind == "notice":
            assert found is None, path.name
            continue
        assert found is not None, f"{path.name} has no text/calendar part"
        method, calendar = found
        assert method == kind.upper() == str(calendar["METHOD"]), path.name
    assert kinds == {"request", "cancel", "notice"}


def test_uids_are_stable_and_sequence_rises_per_invitee(demo: Demo) -> None:
    uids_by_subject: dict[str, set[str]] = defaultdict(set)
    sent: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for path in demo.mail():
        found = calendar_of(parse(path))
        if found is None:
            continue
        method, calendar = found
        event = event_of(calendar)
        uid = str(event["UID"])
        uids_by_subject[str(event["SUMMARY"])].add(uid)
        sent[(uid, path.stem.split("-", 2)[2])].append((method, int(event["SEQUENCE"])))
    for crm in CRMS:
        assert len(uids_by_subject[f"Pricing review on {crm}"]) == 1, crm
    for (uid, recipient), messages in sent.items():
        sequences = [sequence for _, sequence in messages]
        assert sequences == sorted(set(sequences)), f"{recipient} {uid}: {sequences}"
    life_cycle = set().union(*(uids_by_subject[f"Pricing review on {c}"] for c in CRMS))
    kept = [messages for (uid, _), messages in sent.items() if uid in life_cycle]
    assert [("REQUEST", 0), ("REQUEST", 1), ("REQUEST", 2), ("REQUEST", 3), ("CANCEL", 4)] in kept


def test_every_offered_ics_parses_and_names_a_meeting_that_was_mailed(demo: Demo) -> None:
    mailed = set()
    for path in demo.mail():
        found = calendar_of(parse(path))
        if found is not None:
            mailed.add(str(event_of(found[1])["UID"]))
    files = sorted((demo.out / "ics").glob("*.ics"))
    assert len(files) == 3
    for path in files:
        event = event_of(Calendar.from_ical(path.read_bytes()))
        assert str(event["UID"]) in mailed, path.name
        assert event.decoded("DTSTART") < event.decoded("DTEND")


def test_the_sync_report_is_in_the_output(demo: Demo) -> None:
    synced = json.loads((demo.out / "sync-report.json").read_text("utf-8"))
    assert synced["first_run"]["status"] == "succeeded"
    assert synced["first_run"]["sessions_written"] > 0
    assert synced["first_run"]["participants_written"] >= synced["first_run"]["sessions_written"]
    assert set(synced["first_run"]["api_calls"]) == {synced["crm"], synced["provider"]}
    assert synced["second_run"]["sessions_written"] == 0
    assert synced["crm"] not in synced["second_run"]["api_calls"]
    detail = next(s["detail"] for s in demo.report["steps"] if s["step"] == "history sync")
    assert f"{synced['first_run']['sessions_written']} sessions" in detail
    idle = next(s["detail"] for s in demo.report["steps"] if s["step"] == "sync now never started")
    assert "No session exists" in idle


def test_rotation_invitations_come_from_the_confirmed_org_address(demo: Demo) -> None:
    confirmations = [p for p in demo.mail() if p.name.endswith(f"-notice-{ORG_ADDRESS}.eml")]
    assert len(confirmations) == 1
    demos = [m for p in demo.mail() if "Product demo" in str((m := parse(p))["Subject"])]
    assert len(demos) == 5
    assert all(ORG_ADDRESS in str(m["From"]) for m in demos)
    rotation = next(s["detail"] for s in demo.report["steps"] if s["step"] == "rotation")
    assert f"sent from {ORG_ADDRESS}, 5 logged on the" in rotation
    detail = next(s["detail"] for s in demo.report["steps"] if s["step"] == "booking requests")
    assert "accepted" in detail
    assert "pending" in detail


def test_the_panel_and_the_admin_page_were_served_checked_and_stopped(demo: Demo) -> None:
    detail = next(s["detail"] for s in demo.report["steps"] if s["step"] == "web pages")
    urls = re.findall(r"^  (panel|admin): (http://127\.0\.0\.1:\d+/\S+)$", demo.result.stdout, re.M)
    assert [page for page, _ in urls] == ["panel", "admin"]
    for page, url in urls:
        assert f"{page} {url} (200, " in detail
        with pytest.raises(httpx.ConnectError):  # the demo finished: nothing left serving
            httpx.get(url, timeout=5)
    assert "Zoho record Accounts/" in detail


def test_serve_keeps_the_pages_up_until_ctrl_c_then_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MEETINGS_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    demo = subprocess.Popen(
        [str(SCRIPT), "demo", "--serve", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        urls: dict[str, str] = {}
        for line in demo.stdout:
            if found := re.match(r"^  (panel|admin): (\S+)$", line):
                urls[found.group(1)] = found.group(2)
            if line.startswith("Serving until Ctrl-C"):
                break
        assert set(urls) == {"panel", "admin"}, "the demo printed the pages it serves"
        with httpx.Client(timeout=30) as client:
            for page, heading in PAGES.items():  # still up after the demo's own check
                response = get_signed_in(client, urls[page])
                assert response.status_code == 200
                assert heading in response.text
        demo.send_signal(signal.SIGINT)
        rest, errors = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, rest + errors
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["ok"] is True
    assert [step["step"] for step in report["steps"]] == STEPS
    with pytest.raises(httpx.ConnectError):
        httpx.get(urls["panel"], timeout=5)


def test_a_failed_step_stops_everything_and_the_report_is_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[DemoSystem] = []

    @_with_system
    def step_breaks(run: DemoRun, system: DemoSystem) -> str:
        started.append(system)
        raise RuntimeError("boom")

    steps = [cli.step_create_store, cli.step_migrate, step_start_sandbox, step_breaks, step_stop]
    monkeypatch.setattr(cli, "DEMO_STEPS", steps)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, ["demo", "--out", str(out)])
    assert result.exit_code == 1, result.output
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["ok"] is False
    assert report["steps"][-1] == {"step": "breaks", "ok": False, "detail": "RuntimeError: boom"}
    (system,) = started
    assert system.closed, "the sandbox was stopped before the error was reported"
