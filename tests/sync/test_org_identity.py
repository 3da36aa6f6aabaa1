"""One store org per CRM connection, seen alike by the nightly sync, the worker's sweep and
the worker's web app (``[hubspot] portal_id`` set; its meetings live under it)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from crm_meetings.actions import ActionContext, ScheduleRequest, schedule
from crm_meetings.clients import store_org
from crm_meetings.conferencing.factory import from_settings
from crm_meetings.config import load_settings
from crm_meetings.connectors.registry import build_connector
from crm_meetings.model import CrmKind, Invitee, Person
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import DEFAULT_ORG_ID, Store
from crm_meetings.store.tables import MeetingRow
from crm_meetings.sync.jobs import run_nightly
from crm_meetings.sync.worker import Worker
from crm_meetings.web import data

PORTAL = "4242"
PORTAL_ENV = {"CRM_MEETINGS_HUBSPOT__PORTAL_ID": PORTAL}


W = load_module(Path(__file__).with_name("test_jobs_world.py"))


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    yield from W.make_world(tmp_path, sqlite_url)


def _orgs(world: Any) -> dict[str, int]:
    with world.store() as store, store.transaction() as uow:
        rows = uow.session.execute(
            sa.select(MeetingRow.org_id, sa.func.count()).group_by(MeetingRow.org_id)
        )
        return {str(org): int(n) for org, n in rows}


def _move_to_portal(world: Any) -> None:
    """What the web path leaves: the meetings under the signed portal id."""
    with world.store() as store, store.transaction() as uow:
        uow.session.execute(sa.update(MeetingRow).values(org_id=PORTAL))


def test_the_rule_names_the_configured_org_else_the_default(world: Any) -> None:
    assert store_org(world.settings(), CrmKind.HUBSPOT) == DEFAULT_ORG_ID
    bound = load_settings(world.config, env=PORTAL_ENV)
    assert store_org(bound, CrmKind.HUBSPOT) == PORTAL


def test_the_nightly_sync_visits_the_configured_portal(world: Any) -> None:
    _move_to_portal(world)
    report = run_nightly(str(world.config), env=PORTAL_ENV)
    assert report.claimed
    assert [(o.org_id, o.provider, o.organizer) for o in report.outcomes] == [
        (PORTAL, "zoom", W.ORGANIZER)
    ]
    assert report.outcomes[0].ok, report.outcomes[0].error
    assert len(world.crm_sessions()) == world.expected_sessions() > 0
    with world.store() as store, store.transaction() as uow:
        runs = uow.runs.list_recent(org_id=PORTAL)
    assert [r.kind for r in runs] == ["nightly"]


class Crash(BaseException):
    """The process dies here (a rep who closed the page mid-schedule)."""


def _crash_at_crm(action: object, at: str) -> None:
    if at == "crm.create":
        raise Crash(at)


def test_the_worker_finishes_an_interrupted_schedule_in_the_org(world: Any) -> None:
    settings = load_settings(world.config, env=PORTAL_ENV)
    connector = build_connector("hubspot", settings)
    provider = from_settings(settings.zoom)
    request = ScheduleRequest(
        idempotency_key="k-interrupted",
        subject="Interrupted",
        start=world.meetings[0].start + timedelta(days=20),
        end=world.meetings[0].end + timedelta(days=20),
        timezone="Europe/Paris",
        invitees=(Invitee("zed@client.example", "Zed"),),
    )
    with Store(world.store_url) as store:
        ctx = ActionContext(
            store=store,
            connector=connector,
            provider=provider,
            actor=Person(W.ORGANIZER),
            org_id=store_org(settings, CrmKind.HUBSPOT),
            lease=timedelta(0),  # the attempt's lease is over at once
            hook=_crash_at_crm,
        )
        try:
            with pytest.raises(Crash):
                schedule(ctx, request)
        finally:
            connector.close()
            provider.close()
    before = _orgs(world)
    worker = Worker(settings)
    try:
        worker.tick()  # no rep retries: the worker's round finishes it
    finally:
        worker.close()
    assert _orgs(world) == {**before, PORTAL: 1}
    with world.store() as store, store.transaction() as uow:
        [meeting] = uow.meetings.list_by_organizer(W.ORGANIZER, org_id=PORTAL)
    assert meeting.subject == "Interrupted"
    assert meeting.crm_record_id
    assert meeting.provider_meeting_id
    crm_meetings = world.sandbox.emulator("hubspot").state()["meetings"]
    assert sum(meeting.crm_record_id in str(m) for m in crm_meetings) == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_http(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(base + "/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(process.stderr.read() if process.stderr else "the worker exited")


def test_the_worker_web_app_acts_and_binds_like_web_serve(world: Any) -> None:
    """``worker --web`` schedules through the CRM connection (not 503) in the org the
    connection serves, and refuses a key of another org (403)."""
    with world.store() as store, store.transaction() as uow:
        _, mine = data.create_api_key(
            uow, PORTAL, crm="hubspot", name="t", actor_email=W.ORGANIZER, by="test"
        )
        _, other = data.create_api_key(
            uow, "999", crm="hubspot", name="t", actor_email=W.ORGANIZER, by="test"
        )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_meetings.commands.worker", "--web", "--port", str(port)],
        env=world.env(**PORTAL_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_http(base, process)
        start = world.meetings[0].start + timedelta(days=21)
        body = {
            "subject": "From the worker's page",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "timezone": "Europe/Paris",
            "invitees": [{"email": "zed@client.example", "name": "Zed"}],
        }
        answers = [
            httpx.post(
                base + "/api/v1/meetings",
                json=body,
                headers={"Idempotency-Key": "k-worker-web", "Authorization": f"Bearer {key}"},
                timeout=60,
            )
            for key in (mine, other)
        ]
        assert [a.status_code for a in answers] == [201, 403], [a.text for a in answers]
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert _orgs(world)[PORTAL] == 1


def test_run_organizer_refuses_an_org_no_crm_lives_under(world: Any) -> None:
    from crm_meetings.errors import ConfigurationError
    from crm_meetings.sync.jobs import run_organizer

    with pytest.raises(ConfigurationError, match="No enabled CRM keeps its meetings under org"):
        run_organizer(str(world.config), PORTAL, "zoom", W.ORGANIZER, env={})


def _cli(world: Any, *args: str) -> Any:
    from typer.testing import CliRunner

    from crm_meetings.cli import app

    env = {"CRM_MEETINGS_CONFIG": str(world.config), **PORTAL_ENV}
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def any_store_world(tmp_path: Path, store_url: str) -> Iterator[Any]:
    """The world on SQLite and on PostgreSQL (the re-key is plain SQL on both)."""
    yield from W.make_world(tmp_path, store_url)


def test_doctor_names_meetings_left_under_default_and_adopt_org_moves_them(
    any_store_world: Any,
) -> None:
    world = any_store_world
    from crm_meetings.cli import check_store_orgs
    from crm_meetings.routing.rotations import RotationRepository

    with world.store() as store, store.transaction() as uow:
        rotations = uow.repository(RotationRepository)
        rotations.create(DEFAULT_ORG_ID, "Inbound", users=[W.ORGANIZER])
        for org in (DEFAULT_ORG_ID, PORTAL):  # the target holds one already: it stays
            rotations.create(org, "Twin", users=[W.ORGANIZER])
    count = len(world.meetings)
    doctor = _cli(world, "doctor")
    assert doctor.exit_code == 1
    assert "1 check(s) failed: hubspot store org" in doctor.stdout
    [line] = check_store_orgs(load_settings(world.config, env=PORTAL_ENV)) or []
    assert not line.ok
    assert f"{count} hubspot meeting(s) are stored under 'default'" in line.detail
    assert "crm-meetings db adopt-org" in line.fix

    dry = _cli(world, "db", "adopt-org", "--dry-run")
    assert dry.exit_code == 0, (dry.output, dry.exception)
    assert f"{count + 1} row(s) would move" in dry.stdout
    assert _orgs(world) == {DEFAULT_ORG_ID: count}

    adopted = _cli(world, "db", "adopt-org")
    assert adopted.exit_code == 0, (adopted.output, adopted.exception)
    assert f"{count + 1} row(s) moved (hubspot → {PORTAL}; others → {PORTAL})" in adopted.stdout
    assert _orgs(world) == {PORTAL: count}
    assert "same key already in the target org" in adopted.stdout
    with world.store() as store, store.transaction() as uow:
        rotations = uow.repository(RotationRepository)
        assert rotations.get("Inbound", org_id=PORTAL).name == "Inbound"
        assert rotations.get("Twin", org_id=DEFAULT_ORG_ID).name == "Twin"  # kept, not merged
    [line] = check_store_orgs(load_settings(world.config, env=PORTAL_ENV)) or []
    assert line.ok
    assert "All checks passed." in _cli(world, "doctor").stdout
    again = _cli(world, "db", "adopt-org")
    assert "0 row(s) moved" in again.stdout  # nothing is left to move

    report = run_nightly(str(world.config), env=PORTAL_ENV)
    assert [o.org_id for o in report.outcomes] == [PORTAL]
    assert len(world.crm_sessions()) == world.expected_sessions()


def test_sync_without_a_crm_says_what_to_enable(world: Any) -> None:
    from typer.testing import CliRunner

    from crm_meetings.cli import app

    env = {"CRM_MEETINGS_CONFIG": str(world.config), "CRM_MEETINGS_HUBSPOT__ENABLED": "false"}
    result = CliRunner().invoke(app, ["sync"], env=env)
    assert result.exit_code == 1
    assert "No CRM is enabled" in result.output + str(result.exception)
    report = run_nightly(str(world.config), env={"CRM_MEETINGS_HUBSPOT__ENABLED": "false"})
    assert report.skipped == "no CRM is enabled to write history to"
    assert report.outcomes == ()
