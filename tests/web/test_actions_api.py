"""The action endpoints over the actions' in-memory CRM stand-in: keys, versions, org, roles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crm_meetings.model import MeetingStatus
from crm_meetings.web.services import WebServices

if TYPE_CHECKING:
    from conftest import Clock, Web


@pytest.fixture
def services(store: Any, clock: Clock, actions_factory: Any) -> WebServices:
    admins = frozenset({"admin@acme.example"})
    return WebServices(admins=admins, action_context=actions_factory(store, clock, admins))


NEW = {
    "subject": "Pricing call",
    "start": {"local": "2026-03-10T10:00", "timezone": "Europe/Paris"},
    "end": {"local": "2026-03-10T11:00", "timezone": "Europe/Paris"},
    "invitees": [{"email": "zed@client.example", "name": "Zed"}],
    "related": [{"object_type": "Account", "record_id": "001A"}],
    "description": "Agenda",
}


def _post(web: Web, token: str, key: str, body: dict[str, Any] = NEW) -> Any:
    return web.client.post(
        "/api/v1/meetings", json=body, headers={**web.csrf(token), "Idempotency-Key": key}
    )


def test_schedule_is_idempotent_by_key(web: Web) -> None:
    token = web.login()
    first = _post(web, token, "k-1")
    assert first.status_code == 201, first.text
    meeting = first.json()["meeting"]
    assert meeting["start"] == "2026-03-10T09:00:00Z"
    assert meeting["timezone"] == "Europe/Paris"
    assert [m["recipient"] for m in first.json()["messages"]] == ["zed@client.example"]
    again = _post(web, token, "k-1")
    assert again.json()["replayed"] is True
    assert again.json()["meeting"]["id"] == meeting["id"]
    other = _post(web, token, "k-1", {**NEW, "subject": "Another"})
    assert other.status_code == 409
    assert other.json()["code"] == "conflict"
    listed = web.client.get("/api/v1/records/Account/001A/meetings").json()
    assert [m["id"] for m in listed] == [meeting["id"]]


def test_schedule_needs_a_key_and_valid_times(web: Web) -> None:
    token = web.login()
    missing = web.client.post("/api/v1/meetings", json=NEW, headers=web.csrf(token))
    assert missing.status_code == 422
    assert missing.json()["field"] == "header.Idempotency-Key"
    naive = _post(web, token, "k-2", {**NEW, "start": "2026-03-10T10:00:00"})
    assert naive.status_code == 422
    backwards = _post(web, token, "k-3", {**NEW, "end": NEW["start"]})
    assert backwards.status_code == 422
    assert backwards.json()["code"] == "validation_error"


def test_edit_cancel_delete(web: Web) -> None:
    token = web.login()
    meeting = _post(web, token, "s-1").json()["meeting"]
    url = f"/api/v1/meetings/{meeting['id']}"
    edited = web.client.patch(
        url,
        json={
            "expected_version": meeting["version"],
            "subject": "Pricing call (moved)",
            "start": "2026-03-10T10:00:00Z",
            "end": "2026-03-10T11:00:00Z",
        },
        headers={**web.csrf(token), "Idempotency-Key": "e-1"},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["meeting"]["sequence"] == meeting["sequence"] + 1
    stale = web.client.patch(
        url,
        json={"expected_version": meeting["version"], "subject": "Lost update"},
        headers={**web.csrf(token), "Idempotency-Key": "e-2"},
    )
    assert stale.status_code == 409
    cancelled = web.client.post(
        f"{url}/cancel", headers={**web.csrf(token), "Idempotency-Key": "c-1"}
    )
    assert cancelled.json()["meeting"]["status"] == MeetingStatus.CANCELLED.value
    assert [m["method"] for m in cancelled.json()["messages"]] == ["CANCEL"]
    deleted = web.client.delete(url, headers={**web.csrf(token), "Idempotency-Key": "d-1"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["meeting"]["status"] == MeetingStatus.DELETED.value


def test_actions_are_scoped_to_org_and_organizer(web: Web) -> None:
    token = web.login()
    meeting = _post(web, token, "s-2").json()["meeting"]
    web.client.cookies.clear()
    other_org = web.login(org=web.OTHER_ORG)
    cancel = web.client.post(
        f"/api/v1/meetings/{meeting['id']}/cancel",
        headers={**web.csrf(other_org), "Idempotency-Key": "c-2"},
    )
    assert cancel.status_code == 404
    web.client.cookies.clear()
    colleague = web.login(email="bob@acme.example")
    refused = web.client.post(
        f"/api/v1/meetings/{meeting['id']}/cancel",
        headers={**web.csrf(colleague), "Idempotency-Key": "c-3"},
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"


def test_actions_without_csrf_are_403(web: Web) -> None:
    web.login()
    response = web.client.post("/api/v1/meetings", json=NEW, headers={"Idempotency-Key": "x"})
    assert response.status_code == 403


def test_actions_without_a_crm_connection_are_503(
    store: Any, clock: Clock, settings: Any, crm: Any
) -> None:
    from starlette.testclient import TestClient

    from crm_meetings.web.app import create_app

    app = create_app(settings, store=store, clock=clock, services=WebServices())
    with TestClient(app, base_url="https://testserver") as client:
        response = client.post(
            "/api/v1/meetings",
            json=NEW,
            headers={"X-Zoho-Widget-Token": crm.zoho(), "Idempotency-Key": "k"},
        )
    assert response.status_code == 503
    assert response.json()["code"] == "actions_unavailable"
