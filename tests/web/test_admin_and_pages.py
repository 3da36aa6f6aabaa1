"""Admin endpoints (sync time, record types, outbox, health) and the server-rendered pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.base import BaseScheduler

from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.commands import CheckResult
from crm_meetings.config import Settings
from crm_meetings.errors import StoreError
from crm_meetings.model import Meeting
from crm_meetings.sync.schedule import build_scheduler, stop_scheduler
from crm_meetings.web.services import WebServices

if TYPE_CHECKING:
    from conftest import Clock, MeetingFactory, Web


def check_ok(settings: Settings) -> CheckResult:
    return CheckResult("store", True, "SQLite at revision head")


def check_salesforce(settings: Settings) -> CheckResult:
    raise StoreError("token=abc123 refused", hint="Re-authorise.")


def check_crashes(settings: Settings) -> CheckResult:
    raise RuntimeError("boom")


def check_not_applicable(settings: Settings) -> None:
    return None


@pytest.fixture
def scheduler(store_url: str) -> Iterator[BaseScheduler]:
    built = build_scheduler(store_url, timezone="UTC")
    built.start(paused=True)
    try:
        yield built
    finally:
        stop_scheduler(built)


@pytest.fixture
def services(scheduler: BaseScheduler) -> WebServices:
    return WebServices(
        scheduler=scheduler,
        admins=frozenset({"admin@acme.example"}),
        checks=(check_ok, check_salesforce, check_crashes, check_not_applicable),
        session_ttl=timedelta(minutes=30),
        nightly_func="time:time",
    )


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/admin/health", None),
        ("GET", "/api/v1/admin/sync-schedule", None),
        ("PUT", "/api/v1/admin/sync-schedule", {"hour": 3, "minute": 0, "timezone": "UTC"}),
        ("GET", "/api/v1/admin/record-types", None),
        ("PUT", "/api/v1/admin/record-types", {"hidden": []}),
        ("GET", "/api/v1/admin/outbox", None),
        ("POST", "/api/v1/admin/outbox/retry", {}),
        ("GET", "/api/v1/admin/api-keys", None),
        ("POST", "/api/v1/admin/api-keys", {"name": "x"}),
        ("DELETE", "/api/v1/admin/api-keys/1", None),
    ],
)
def test_admin_endpoints_refuse_reps(web: Web, method: str, path: str, body: Any) -> None:
    token = web.login()
    response = web.client.request(method, path, json=body, headers=web.csrf(token))
    _error(response, 403, "permission_denied")


def test_health_runs_every_check_and_masks_secrets(web: Web) -> None:
    web.login(email=web.ADMIN)
    checks = web.client.get("/api/v1/admin/health").json()
    assert [(c["name"], c["ok"]) for c in checks] == [
        ("store", True),
        ("salesforce", False),
        ("crashes", False),
    ]
    assert "abc123" not in str(checks)
    assert checks[2]["detail"] == "RuntimeError: boom"


def test_saving_the_sync_hour_reschedules_and_shows_the_next_run(
    web: Web, scheduler: BaseScheduler
) -> None:
    token = web.login(email=web.ADMIN)
    before = web.client.get("/api/v1/admin/sync-schedule").json()
    assert (before["hour"], before["minute"], before["timezone"]) == (2, 0, "UTC")
    saved = web.client.put(
        "/api/v1/admin/sync-schedule",
        json={"hour": 5, "minute": 30, "timezone": "Europe/Paris"},
        headers=web.csrf(token),
    )
    assert saved.status_code == 200, saved.text
    body = saved.json()
    from datetime import datetime

    local = datetime.fromisoformat(body["next_run_time"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (5, 30)
    job = scheduler.get_job("nightly-sync")
    assert job is not None
    assert job.next_run_time == datetime.fromisoformat(body["next_run_time"])
    again = web.client.get("/api/v1/admin/sync-schedule").json()
    assert (again["hour"], again["minute"], again["timezone"]) == (5, 30, "Europe/Paris")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hour": 24, "minute": 0, "timezone": "UTC"}, "body.hour"),
        ({"hour": 3, "minute": 0, "timezone": "Mars/Olympus"}, "timezone"),
        ({"hour": "three", "timezone": "UTC"}, "body.hour"),
    ],
)
def test_bad_sync_schedule_is_422(web: Web, body: dict[str, Any], field: str) -> None:
    token = web.login(email=web.ADMIN)
    response = web.client.put("/api/v1/admin/sync-schedule", json=body, headers=web.csrf(token))
    assert _error(response, 422, "validation_error")["field"] == field


def test_hidden_record_types_are_not_offered_to_reps(
    web: Web, make_meeting: MeetingFactory
) -> None:
    with web.store.transaction() as uow:
        for record_type in ("Customer_Meeting", "Internal_Sync"):
            uow.meetings.add(make_meeting(record_type=record_type), org_id=web.ORG)
    token = web.login(email=web.ADMIN)
    saved = web.client.put(
        "/api/v1/admin/record-types", json={"hidden": ["Internal_Sync"]}, headers=web.csrf(token)
    )
    assert [(t["id"], t["visible"]) for t in saved.json()] == [
        ("Customer_Meeting", True),
        ("Internal_Sync", False),
    ]
    web.client.cookies.clear()
    web.login()
    assert [t["id"] for t in web.client.get("/api/v1/record-types").json()] == ["Customer_Meeting"]


def _outbox_row(meeting: Meeting, status: str, n: int, clock: Clock) -> OutboxMessageRow:
    return OutboxMessageRow(
        idempotency_key=f"key-{meeting.id}-{n}",
        meeting_uid=meeting.uid,
        method="REQUEST",
        sequence=0,
        recipient="zed@client.example",
        sender="olivia@acme.example",
        subject=meeting.subject,
        message_id=f"<{n}@test>",
        raw=b"raw",
        status=status,
        attempts=8 if status == "failed" else 0,
        next_attempt_at=clock(),
        created_at=clock(),
        last_error="550 mailbox unavailable" if status == "failed" else None,
    )


def test_outbox_lists_and_retries_the_orgs_messages_only(
    web: Web, make_meeting: MeetingFactory, clock: Clock
) -> None:
    with web.store.transaction() as uow:
        mine = uow.meetings.add(make_meeting(), org_id=web.ORG)
        other = uow.meetings.add(make_meeting(), org_id=web.OTHER_ORG)
        uow.session.add_all(
            [
                _outbox_row(mine, "failed", 1, clock),
                _outbox_row(mine, "sent", 2, clock),
                _outbox_row(other, "failed", 3, clock),
            ]
        )
    token = web.login(email=web.ADMIN)
    listed = web.client.get("/api/v1/admin/outbox").json()
    assert [o["status"] for o in listed] == ["sent", "failed"]
    failed = web.client.get("/api/v1/admin/outbox?status=failed").json()
    assert failed[0]["last_error"] == "550 mailbox unavailable"
    _error(web.client.get("/api/v1/admin/outbox?status=lost"), 422, "validation_error")
    retried = web.client.post("/api/v1/admin/outbox/retry", json={}, headers=web.csrf(token))
    assert retried.json() == {"retried": 1}
    assert [o["status"] for o in web.client.get("/api/v1/admin/outbox").json()] == [
        "sent",
        "queued",
    ]


# --- errors -----------------------------------------------------------------------------


def test_unknown_route_and_method_use_the_error_shape(web: Web) -> None:
    _error(web.client.get("/api/v1/nowhere"), 404, "not_found")
    _error(web.client.patch("/api/v1/me"), 405, "method_not_allowed")


def test_errors_on_pages_render_html(web: Web) -> None:
    response = web.client.get("/panel", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "Open the panel from the CRM record page" in response.text


# --- pages ------------------------------------------------------------------------------


def test_panel_groups_meetings_and_escapes_everything(
    web: Web, make_meeting: MeetingFactory, clock: Clock
) -> None:
    hostile = "<script>alert(1)</script> & co"
    with web.store.transaction() as uow:
        uow.meetings.add(make_meeting(subject=hostile), org_id=web.ORG)
        past = make_meeting(
            subject="Kick-off",
            start=clock() - timedelta(days=2),
            end=clock() - timedelta(days=2) + timedelta(hours=1),
        )
        uow.meetings.add(past, org_id=web.ORG)
        cancelled, _ = make_meeting(subject="Dropped").revise(status="cancelled")
        uow.meetings.add(cancelled, org_id=web.ORG)
    web.login()
    html = web.client.get("/panel").text
    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    upcoming, rest = html.split('id="h-past"')
    past_part, cancelled_part = rest.split('id="h-cancelled"')
    assert "&lt;script&gt;" in upcoming
    assert "Kick-off" in past_part
    assert "No session exists" in past_part
    assert "Dropped" in cancelled_part
    for secret in (
        "test-session-secret",
        "canvas-consumer-secret",
        "hubspot-client-secret",
        "zoho-widget-secret",
    ):
        assert secret not in html
    assert 'name="viewport"' in html
    assert 'for="new-subject"' in html


def test_admin_page_shows_health_schedule_and_record_types(web: Web) -> None:
    web.login(email=web.ADMIN, page="admin")
    html = web.client.get("/admin").text
    assert "SQLite at revision head" in html
    assert 'id="next-run"' in html
    assert "abc123" not in html
    web.client.cookies.clear()
    web.login()
    assert web.client.get("/admin").status_code == 403
