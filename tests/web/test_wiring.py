"""The web app on real services: clients built from the settings, "sync now" through the
history engine, and ``crm-meetings web serve`` as a subprocess — all over the sandbox."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from crm_meetings.config import load_settings
from crm_meetings.model import CrmKind, Invitee, Meeting, Person, new_meeting
from crm_meetings.sandbox.seed import SeedMeeting
from crm_meetings.store import Store, upgrade
from crm_meetings.web.app import create_app
from crm_meetings.web.data import create_api_key
from crm_meetings.web.services import WebServices
from crm_meetings.web.wiring import Clients, live_services

if TYPE_CHECKING:
    from conftest import Clock, SandboxConfig, Stack, Web

SCRIPT = Path(sys.executable).with_name("crm-meetings")
ORG = "00Dxx0000001gEREAY"  # the org the test CRM signs for (conftest.ORG)
WEB_SECTION = '[web]\nsession_secret = "s"\nsalesforce_canvas_secret = "canvas-consumer-secret"\n'
DESCRIBE = "/services/data/v{version}/sobjects/{sobject}/describe"


@pytest.fixture
def services(store: Store, clock: Clock, stack: Stack) -> WebServices:
    return stack.services(store, clock)


def _crm_calls(stack: Stack) -> int:
    return stack.sandbox.calls.count("salesforce")


# --- clients from the settings --------------------------------------------------------


def test_clients_from_the_settings_act_on_the_sandbox_and_close(
    stack: Stack, sandbox_config: SandboxConfig, store: Store, clock: Clock, crm: Any
) -> None:
    path = sandbox_config(stack.sandbox, enable=("salesforce", "zoom"), extra=WEB_SECTION)
    settings = load_settings(path, {"CRM_MEETINGS_SALESFORCE__ORG_ID": ORG})
    clients = Clients.from_settings(settings)
    assert (clients.crms, clients.providers) == ({CrmKind.SALESFORCE}, ("zoom",))
    from starlette.testclient import TestClient

    services = live_services(settings, store, clients, clock=clock)
    app = create_app(settings, store=store, clock=clock, services=services)
    try:
        with TestClient(app, base_url="https://testserver") as client:
            login = client.post(
                "/salesforce/canvas",
                data={"signed_request": crm.canvas(email=stack.organizer, record=stack.account)},
            )
            assert login.status_code == 200, login.text
            names = [t["name"] for t in client.get("/api/v1/record-types").json()]
            assert names == ["Customer Meeting", "Internal Meeting"]
            client.get("/api/v1/record-types")
            described = stack.sandbox.calls.count("salesforce", endpoint=DESCRIBE)
            assert described == 1, "the panel and two reads: record types asked once"
            connector = clients.connector(CrmKind.SALESFORCE)
            assert clients.connector(CrmKind.SALESFORCE) is connector, "one client per process"
    finally:
        clients.close()
    with pytest.raises(Exception, match="shutting down"):
        clients.connector(CrmKind.SALESFORCE)


def test_a_crm_the_settings_do_not_enable_has_no_record_types_and_no_actions(
    web: Web, stack: Stack
) -> None:
    """A Zoho widget calling a server that only has Salesforce configured."""

    def zoho() -> dict[str, str]:
        return {"X-Zoho-Widget-Token": web.crm.zoho(email=stack.organizer)}

    assert web.client.get("/api/v1/record-types", headers=zoho()).json() == []
    response = web.client.post(
        "/api/v1/meetings",
        json={
            "subject": "x",
            "start": "2026-03-10T10:00:00Z",
            "end": "2026-03-10T11:00:00Z",
        },
        headers={**zoho(), "Idempotency-Key": "z-1"},
    )
    assert response.status_code == 503
    assert response.json()["code"] == "actions_unavailable"
    assert "zoho" in response.json()["message"]


# --- sync now through the engine ------------------------------------------------------


def _seeded(stack: Stack, *, ran: bool) -> SeedMeeting:
    assert stack.sandbox.data is not None
    return next(m for m in stack.sandbox.data.meetings if bool(m.sessions) is ran)


def _ours(stack: Stack, store: Store, org: str, seeded: SeedMeeting) -> Meeting:
    """What scheduling left behind for a seeded Zoom meeting: a CRM record and our row."""
    draft = new_meeting(
        crm=CrmKind.SALESFORCE,
        subject=seeded.subject,
        start=seeded.start,
        end=seeded.end,
        timezone=seeded.timezone,
        organizer=Person(stack.organizer),
        now=seeded.start - timedelta(days=7),
        invitees=tuple(Invitee(email, name) for name, email in seeded.invitees),
        related=(stack.account,),
        provider="zoom",
        provider_meeting_id=seeded.provider_meeting_id,
        join_url=seeded.join_url,
    )
    created = stack.clients.connector(CrmKind.SALESFORCE).create(draft)
    with store.transaction() as uow:
        uow.meetings.add(created, org_id=org)
    return created


def test_sync_now_writes_the_sessions_into_salesforce_once(web: Web, stack: Stack) -> None:
    seeded = _seeded(stack, ran=True)
    ours = _ours(stack, web.store, web.ORG, seeded)
    token = web.login(email=stack.organizer, record=stack.account)
    url = f"/api/v1/meetings/{ours.id}/sync"
    first = web.client.post(url, headers=web.csrf(token))
    assert first.status_code == 200, first.text
    sessions = first.json()["sessions"]
    assert len(sessions) == len(seeded.sessions)
    assert all(s["participants"] for s in sessions)
    history = stack.sandbox.emulator("salesforce").state()["history_sessions"]
    assert len(history) == len(seeded.sessions)
    calls = _crm_calls(stack)
    again = web.client.post(url, headers=web.csrf(token))
    assert again.json()["sessions"] == sessions
    assert _crm_calls(stack) == calls, "nothing new: the CRM is not written again"
    with web.store.transaction() as uow:
        runs = uow.runs.list_recent(org_id=web.ORG)
    assert [r.kind for r in runs] == ["manual", "manual"]


def test_a_meeting_that_never_ran_answers_no_session_exists(web: Web, stack: Stack) -> None:
    ours = _ours(stack, web.store, web.ORG, _seeded(stack, ran=False))
    token = web.login(email=stack.organizer, record=stack.account)
    response = web.client.post(f"/api/v1/meetings/{ours.id}/sync", headers=web.csrf(token))
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "no_session_exists"
    assert body["message"] == f"No session exists for meeting {ours.id}."


def test_sync_my_meetings_runs_the_engine_for_the_organizer(
    web: Web, stack: Stack, clock: Clock
) -> None:
    ran, idle = _seeded(stack, ran=True), _seeded(stack, ran=False)
    with_sessions = _ours(stack, web.store, web.ORG, ran)
    without = _ours(stack, web.store, web.ORG, idle)
    clock.now = ran.end + timedelta(days=1)  # the engine looks back from "now"
    token = web.login(email=stack.organizer, record=stack.account)
    body = web.client.post("/api/v1/sync", headers=web.csrf(token)).json()
    assert body["organizer"] == stack.organizer
    assert body["meetings"] == 2
    assert without.id in body["without_sessions"]
    assert with_sessions.id not in body["without_sessions"]


# --- crm-meetings web serve -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_web_serve_acts_through_the_configured_crm_and_stops_cleanly(
    stack: Stack, sandbox_config: SandboxConfig, tmp_path: Path
) -> None:
    db = tmp_path / "serve.db"
    url = f"sqlite+pysqlite:///{db}"
    extra = f'{WEB_SECTION}[store]\nurl = "{url}"\n'
    path = sandbox_config(stack.sandbox, enable=("salesforce", "zoom"), extra=extra)
    upgrade(url)
    with Store(url) as store, store.transaction() as uow:
        _, key = create_api_key(
            uow, ORG, crm="salesforce", name="t", actor_email=stack.organizer, by="t"
        )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MEETINGS_")}
    env["CRM_MEETINGS_SALESFORCE__ORG_ID"] = ORG
    server = subprocess.Popen(
        [str(SCRIPT), "--config", str(path), "web", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
            _wait_for(http, server)
            names = [t["name"] for t in http.get("/api/v1/record-types").json()]
            assert names == ["Customer Meeting", "Internal Meeting"]
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
            scheduled = http.post(
                "/api/v1/meetings",
                json={
                    "subject": "Served",
                    "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat(),
                    "invitees": [{"email": "zed@client.example"}],
                    "related": [{"object_type": "Account", "record_id": stack.account.record_id}],
                },
                headers={"Idempotency-Key": "serve-1"},
            )
            assert scheduled.status_code == 201, scheduled.text
        record = scheduled.json()["meeting"]["crm_record_id"]
        assert stack.event(record)["Subject"] == "Served"
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "Serving on" in out


def _wait_for(http: httpx.Client, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(server.communicate()[1])
        try:
            http.get("/openapi.json")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("crm-meetings web serve did not start")
