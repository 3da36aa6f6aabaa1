"""The action endpoints on the real stack: sandboxed Salesforce and Zoom, mail over SMTP.

Keys, versions, org and roles; each answer is checked against the emulators' state and
the mail the SMTP sink received.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from crm_meetings.model import MeetingStatus
from crm_meetings.store import Store
from crm_meetings.web.services import WebServices

if TYPE_CHECKING:
    from conftest import Clock, Stack, Web

INVITEE = "zed@client.example"


@pytest.fixture
def services(store: Store, clock: Clock, stack: Stack) -> WebServices:
    return stack.services(store, clock)


def new_meeting(stack: Stack, **changes: Any) -> dict[str, Any]:
    """A schedule request body related to the seeded Account."""
    body = {
        "subject": "Pricing call",
        "start": {"local": "2026-03-10T10:00", "timezone": "Europe/Paris"},
        "end": {"local": "2026-03-10T11:00", "timezone": "Europe/Paris"},
        "invitees": [{"email": INVITEE, "name": "Zed"}],
        "related": [{"object_type": "Account", "record_id": stack.account.record_id}],
        "description": "Agenda",
    }
    return {**body, **changes}


def login(web: Web, stack: Stack, **canvas: Any) -> str:
    """Open the panel on the seeded Account as the seeded rep (unless told otherwise)."""
    return web.login(**{"email": stack.organizer, "record": stack.account, **canvas})


def _post(web: Web, token: str, key: str, body: dict[str, Any]) -> Any:
    return web.client.post(
        "/api/v1/meetings", json=body, headers={**web.csrf(token), "Idempotency-Key": key}
    )


def test_schedule_is_idempotent_by_key(web: Web, stack: Stack, clock: Clock) -> None:
    token = login(web, stack)
    first = _post(web, token, "k-1", new_meeting(stack))
    assert first.status_code == 201, first.text
    meeting = first.json()["meeting"]
    assert meeting["start"] == "2026-03-10T09:00:00Z"
    assert meeting["timezone"] == "Europe/Paris"
    assert [m["recipient"] for m in first.json()["messages"]] == [INVITEE]
    event = stack.event(meeting["crm_record_id"])
    assert event["Subject"] == "Pricing call"
    assert event["WhatId"] == stack.account.record_id
    zoom = stack.sandbox.state("zoom")["meetings"]
    assert [m["topic"] for m in zoom.values() if m["topic"] == "Pricing call"] == ["Pricing call"]

    again = _post(web, token, "k-1", new_meeting(stack))
    assert again.json()["replayed"] is True
    assert again.json()["meeting"]["id"] == meeting["id"]
    other = _post(web, token, "k-1", new_meeting(stack, subject="Another"))
    assert other.status_code == 409
    assert other.json()["code"] == "conflict"
    listed = web.client.get(f"/api/v1/records/Account/{stack.account.record_id}/meetings")
    assert [m["id"] for m in listed.json()] == [meeting["id"]]
    assert [e["Subject"] for e in stack.events()].count("Pricing call") == 1
    stack.deliver(web.store, clock())
    assert stack.mail.itip() == [("REQUEST", 0, INVITEE)]


def test_schedule_needs_a_key_and_valid_times(web: Web, stack: Stack) -> None:
    token = login(web, stack)
    events = len(stack.events())
    missing = web.client.post("/api/v1/meetings", json=new_meeting(stack), headers=web.csrf(token))
    assert missing.status_code == 422
    assert missing.json()["field"] == "header.Idempotency-Key"
    naive = _post(web, token, "k-2", new_meeting(stack, start="2026-03-10T10:00:00"))
    assert naive.status_code == 422
    body = new_meeting(stack)
    backwards = _post(web, token, "k-3", {**body, "end": body["start"]})
    assert backwards.status_code == 422
    assert backwards.json()["code"] == "validation_error"
    assert len(stack.events()) == events, "nothing reached the CRM"


def test_edit_cancel_delete(web: Web, stack: Stack, clock: Clock) -> None:
    token = login(web, stack)
    meeting = _post(web, token, "s-1", new_meeting(stack)).json()["meeting"]
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
    assert stack.event(meeting["crm_record_id"])["Subject"] == "Pricing call (moved)"
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
    assert stack.event(meeting["crm_record_id"])["Meeting_Status__c"] == "cancelled"
    deleted = web.client.delete(url, headers={**web.csrf(token), "Idempotency-Key": "d-1"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["meeting"]["status"] == MeetingStatus.DELETED.value
    assert (
        meeting["crm_record_id"] in stack.sandbox.emulator("salesforce").state()["deleted_events"]
    )
    stack.deliver(web.store, clock())
    assert stack.mail.itip() == [
        ("REQUEST", 0, INVITEE),
        ("REQUEST", 1, INVITEE),
        ("CANCEL", 2, INVITEE),
    ]


def test_actions_are_scoped_to_org_and_organizer(web: Web, stack: Stack) -> None:
    token = login(web, stack)
    meeting = _post(web, token, "s-2", new_meeting(stack)).json()["meeting"]
    web.client.cookies.clear()
    other_org = web.client.post(  # the Salesforce connection serves ORG only
        "/salesforce/canvas",
        data={"signed_request": web.crm.canvas(org=web.OTHER_ORG, email=stack.organizer)},
    )
    assert other_org.status_code == 403
    assert f"serves Salesforce org {web.ORG}" in other_org.json()["message"]
    web.client.cookies.clear()
    colleague = login(web, stack, email="bob@acme.example")
    refused = web.client.post(
        f"/api/v1/meetings/{meeting['id']}/cancel",
        headers={**web.csrf(colleague), "Idempotency-Key": "c-3"},
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    assert stack.event(meeting["crm_record_id"])["Meeting_Status__c"] == "scheduled"


def test_actions_without_csrf_are_403(web: Web, stack: Stack) -> None:
    login(web, stack)
    response = web.client.post(
        "/api/v1/meetings", json=new_meeting(stack), headers={"Idempotency-Key": "x"}
    )
    assert response.status_code == 403


def test_actions_without_a_crm_connection_are_503(
    store: Store, clock: Clock, settings: Any, crm: Any, stack: Stack
) -> None:
    """No CRM at all, or none for the caller's CRM (a Zoho widget on a Salesforce server)."""
    from starlette.testclient import TestClient

    from crm_meetings.web.app import create_app

    for services in (WebServices(), stack.services(store, clock)):
        app = create_app(settings, store=store, clock=clock, services=services)
        with TestClient(app, base_url="https://testserver") as client:
            response = client.post(
                "/api/v1/meetings",
                json=new_meeting(stack),
                headers={"X-Zoho-Widget-Token": crm.zoho(), "Idempotency-Key": "k"},
            )
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "actions_unavailable"
