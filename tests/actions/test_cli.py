"""``crm-meetings meeting …`` against the sandbox: Salesforce and Zoom built from a
crm-meetings.toml that points at it, a real store, Typer's runner (and one run as a
program, for the exit status of an error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from icalendar import Calendar
from typer.testing import CliRunner

from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.commands.meeting import app
from crm_meetings.errors import NotFoundError
from crm_meetings.routing.rotations import RotationRepository
from crm_meetings.sandbox.salesforce import SalesforceEmulator
from crm_meetings.sandbox.testing import SandboxFactory
from crm_meetings.senders.store import DEFAULT_USE, SenderRepository, confirm_address
from crm_meetings.store import DEFAULT_ORG_ID, Store, upgrade
from crm_meetings.store.tables import MeetingRow

ACTOR = "rep0@sales.example.com"  # a seed user: Zoom hosts meetings for them


@pytest.fixture
def config(
    sandbox_factory: SandboxFactory, sandbox_config: Any, store_url: str
) -> tuple[Path, str]:
    """The settings file, and the seeded Account to relate meetings to."""
    box = sandbox_factory(["salesforce", "zoom"])
    upgrade(store_url)
    path: Path = sandbox_config(
        box, enable=("salesforce", "zoom"), extra=f'[store]\nurl = "{store_url}"\n'
    )
    emulator = box.emulator("salesforce")
    assert isinstance(emulator, SalesforceEmulator)
    return path, emulator.seed_ids["record-0"]


def run(config: Path, *args: str) -> Any:
    env = {"CRM_MEETINGS_CONFIG": str(config), "CRM_MEETINGS_ACTOR": ACTOR}
    result = CliRunner().invoke(app, [*args, "--crm", "salesforce"], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def as_json(config: Path, *args: str) -> Any:
    return json.loads(run(config, *args, "--json").stdout)


def test_a_meeting_from_schedule_to_delete(config: tuple[Path, str], tmp_path: Path) -> None:
    path, account = config
    scheduled = as_json(
        path,
        "schedule",
        "--subject=Pricing review",
        "--start=2031-05-06T10:00",
        "--end=2031-05-06T11:00",
        "--timezone=Europe/Paris",
        "--invitee=Zed <zed@client.example>",
        "--invitee=amy@client.example",
        f"--related=Account:{account}",
        "--key=k-schedule",
    )
    meeting = scheduled["meeting"]
    record = meeting["crm_record_id"]
    assert meeting["start"] == "2031-05-06T08:00:00+00:00"
    assert meeting["provider"] == "zoom"
    assert meeting["join_url"].startswith("https://zoom.example.com/j/")
    assert [m["recipient"] for m in scheduled["messages"]] == [
        "zed@client.example",
        "amy@client.example",
    ]

    shown = run(path, "show", record).stdout
    assert "Pricing review" in shown
    assert "2031-05-06 10:00 – 11:00 Europe/Paris" in shown

    edited = as_json(path, "edit", record, "--version=1", "--start=2031-05-06T14:00",
                     "--end=2031-05-06T15:00", "--key=k-edit")  # fmt: skip
    assert edited["meeting"]["start"] == "2031-05-06T12:00:00+00:00"  # read in the meeting's zone
    assert edited["meeting"]["sequence"] == 1

    invitation = run(path, "invitation", record).stdout
    assert invitation.startswith("Pricing review\n")
    assert meeting["join_url"] in invitation
    out = tmp_path / "meeting.ics"
    run(path, "ics", record, f"--out={out}")
    event = Calendar.from_ical(out.read_bytes()).walk("VEVENT")[0]
    assert str(event["UID"]) == meeting["uid"]

    human = run(path, "cancel", record, "--key=k-cancel").stdout
    assert "cancel: done" in human
    assert "CANCEL #2 to zed@client.example (queued)" in human
    deleted = as_json(path, "delete", record, "--key=k-delete")
    assert deleted["meeting"]["status"] == "deleted"
    assert as_json(path, "delete", record, "--key=k-delete")["replayed"]


def test_errors_say_what_to_do_and_exit_1(config: tuple[Path, str]) -> None:
    path, _ = config
    env = {
        **os.environ,
        "CRM_MEETINGS_CONFIG": str(path),
        "CRM_MEETINGS_ACTOR": ACTOR,
    }
    command = [sys.executable, "-m", "crm_meetings.commands.meeting", "show", "nope"]
    result = subprocess.run(
        [*command, "--crm", "salesforce"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "Error: No meeting nope" in result.stderr
    assert "Traceback" not in result.stderr
    naive = CliRunner().invoke(
        app,
        ["schedule", "--crm", "salesforce", "--subject=x", "--start=soon", "--end=later"],
        env={"CRM_MEETINGS_CONFIG": str(path), "CRM_MEETINGS_ACTOR": ACTOR},
    )
    assert naive.exit_code != 0
    assert "not an ISO 8601" in str(naive.exception)


def test_schedule_through_a_rotation_picks_the_host_and_cancel_gives_the_count_back(
    config: tuple[Path, str], store_url: str
) -> None:
    path, account = config
    with Store(store_url) as store, store.transaction() as uow:
        uow.repository(RotationRepository).create(
            DEFAULT_ORG_ID, "Inbound", users=[ACTOR, "zoe@sales.example.com"]
        )
    args = ["--subject=Demo", "--start=2031-05-06T10:00", "--end=2031-05-06T11:00",
            f"--related=Account:{account}", "--rotation=Inbound"]  # fmt: skip
    human = run(path, "schedule", *args, "--key=k-rot").stdout
    assert "rotation rot_" in human
    assert f"Suggested: {ACTOR}" in human
    booked = as_json(path, "schedule", *args, "--key=k-rot")
    assert booked["replayed"]
    assert booked["extra"]["rotation_booking"]["member"] == ACTOR
    with Store(store_url) as store, store.transaction() as uow:
        assert (
            uow.repository(RotationRepository)
            .get("Inbound", org_id=DEFAULT_ORG_ID)
            .member(ACTOR)
            .count
            == 1
        )
    run(path, "cancel", booked["meeting"]["id"], "--key=k-rot-cancel")
    with Store(store_url) as store, store.transaction() as uow:
        rotation = uow.repository(RotationRepository).get("Inbound", org_id=DEFAULT_ORG_ID)
    assert rotation.member(ACTOR).count == 0


def _org_address(store_url: str, profiles: list[str]) -> None:
    """sales@acme.example, confirmed, the org's invitation address for ``profiles``."""
    with Store(store_url) as store:
        with store.transaction() as uow:
            address = uow.repository(SenderRepository).add(
                DEFAULT_ORG_ID, "sales@acme.example", "Acme Sales", profiles,
                mail_from=Sender("no-reply@acme.example"), code_factory=lambda: "ABCD2345",
            )  # fmt: skip
        confirm_address(store, DEFAULT_ORG_ID, address.id, "ABCD2345")
        with store.transaction() as uow:
            uow.repository(SenderRepository).set_use(DEFAULT_ORG_ID, *DEFAULT_USE, address.id)


def _senders_of(store_url: str, recipient: str) -> list[str]:
    with Store(store_url) as store, store.transaction() as uow:
        query = sa.select(OutboxMessageRow.sender).where(OutboxMessageRow.recipient == recipient)
        return list(uow.session.scalars(query.order_by(OutboxMessageRow.id)))


SCHEDULE = ("schedule", "--subject=Org mail", "--start=2031-05-06T10:00",
            "--end=2031-05-06T11:00", "--invitee=zed@client.example")  # fmt: skip


def test_profile_sends_from_the_org_address_it_may_use(
    config: tuple[Path, str], store_url: str
) -> None:
    path, account = config
    _org_address(store_url, ["rep"])
    scheduled = as_json(path, *SCHEDULE, f"--related=Account:{account}", "--profile=rep")
    record = scheduled["meeting"]["crm_record_id"]
    as_json(path, "cancel", record, "--profile=admin")  # not allowed: the organizer sends
    assert _senders_of(store_url, "zed@client.example") == ["sales@acme.example", ACTOR]


def test_an_explicit_sender_the_profile_may_not_use_is_refused(
    config: tuple[Path, str], store_url: str
) -> None:
    path, account = config
    _org_address(store_url, ["admin"])
    env = {"CRM_MEETINGS_CONFIG": str(path), "CRM_MEETINGS_ACTOR": ACTOR}
    args = [*SCHEDULE, f"--related=Account:{account}", "--crm", "salesforce"]
    asked = [*args, "--profile=rep", "--sender=sales@acme.example"]
    refused = CliRunner().invoke(app, asked, env=env)
    assert refused.exit_code == 1
    assert "'rep' profile may not send from sales@acme.example" in str(refused.exception)
    no_profile = CliRunner().invoke(app, [*args, "--sender=sales@acme.example"], env=env)
    assert no_profile.exit_code == 1
    assert "needs --profile" in str(no_profile.exception)
    assert _senders_of(store_url, "zed@client.example") == []  # nothing was queued
    run(path, *SCHEDULE, f"--related=Account:{account}", "--profile=admin",
        "--sender=sales@acme.example")  # fmt: skip
    assert _senders_of(store_url, "zed@client.example") == ["sales@acme.example"]


def test_a_meeting_lives_under_the_org_its_connection_serves(
    config: tuple[Path, str], store_url: str
) -> None:
    """With ``[salesforce] org_id`` set, the CLI writes and reads where the panel does."""
    path, account = config
    org = "00D5g000004ABCD"
    env = {
        "CRM_MEETINGS_CONFIG": str(path),
        "CRM_MEETINGS_ACTOR": ACTOR,
        "CRM_MEETINGS_SALESFORCE__ORG_ID": org,
    }
    args = [
        "schedule",
        "--subject=Bound",
        "--start=2031-05-07T10:00",
        "--end=2031-05-07T11:00",
        f"--related=Account:{account}",
        "--provider=none",
        "--json",
        "--crm",
        "salesforce",
    ]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    meeting_id = json.loads(result.stdout)["meeting"]["id"]
    with Store(store_url) as store, store.transaction() as uow:
        [row] = uow.session.scalars(sa.select(MeetingRow).where(MeetingRow.id == meeting_id))
        assert row.org_id == org
    shown = CliRunner().invoke(app, ["show", meeting_id, "--crm", "salesforce", "--json"], env=env)
    assert shown.exit_code == 0, (shown.output, shown.exception)
    unbound = CliRunner().invoke(
        app,
        ["show", meeting_id, "--crm", "salesforce"],
        env={**env, "CRM_MEETINGS_SALESFORCE__ORG_ID": ""},
    )
    assert isinstance(unbound.exception, NotFoundError)  # "default" does not hold it


def test_edit_and_cancel_act_at_the_provider_the_meeting_was_scheduled_on(
    sandbox_factory: SandboxFactory, sandbox_config: Any, store_url: str
) -> None:
    """Zoom is the default (the first enabled); a meeting scheduled with ``--provider goto``
    is edited and cancelled at GoTo, and Zoom gets no call."""
    box = sandbox_factory(["salesforce", "zoom", "goto"])
    upgrade(store_url)
    path: Path = sandbox_config(
        box, enable=("salesforce", "zoom", "goto"), extra=f'[store]\nurl = "{store_url}"\n'
    )
    emulator = box.emulator("salesforce")
    assert isinstance(emulator, SalesforceEmulator)
    account = emulator.seed_ids["record-0"]
    meeting = as_json(path, "schedule", "--subject=On GoTo", "--start=2031-05-06T10:00",
                      "--end=2031-05-06T11:00", "--invitee=zed@client.example",
                      f"--related=Account:{account}", "--provider=goto")["meeting"]  # fmt: skip
    assert meeting["provider"] == "goto"
    pid, record = meeting["provider_meeting_id"], meeting["crm_record_id"]
    zoom_calls = box.calls.count("zoom")
    as_json(path, "edit", record, "--version=1", "--subject=On GoTo (moved)")
    assert box.state("goto")["meetings"][pid]["subject"] == "On GoTo (moved)"
    cancelled = as_json(path, "cancel", record)
    assert cancelled["warnings"] == []
    assert box.state("goto")["meetings"][pid]["deleted"]
    assert box.calls.count("zoom") == zoom_calls, "Zoom got no call"
