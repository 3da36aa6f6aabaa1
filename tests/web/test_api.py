"""The HTTP API: every auth path, org scoping, CSRF, error JSON, and every endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import icalendar
import pytest
from starlette.testclient import TestClient  # imported by conftest first, without warning

from crm_meetings.config import Settings
from crm_meetings.model import Meeting, Participant, Session
from crm_meetings.store import RunCounters, Store, SyncRunStatus
from crm_meetings.web.app import create_app
from crm_meetings.web.services import WebServices
from crm_meetings.web.tables import ApiKeyRow

if TYPE_CHECKING:
    from conftest import (
        Clock,
        MeetingFactory,
        Web,  # tests/web/conftest.py
    )


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["message"]
    assert body["hint"]
    return body


def _store_meeting(store: Store, meeting: Meeting, org: str) -> Meeting:
    with store.transaction() as uow:
        return uow.meetings.add(meeting, org_id=org)


@pytest.fixture
def ours(web: Web, make_meeting: MeetingFactory) -> Meeting:
    """A meeting of the rep's org on the Account the panel is opened on."""
    return _store_meeting(web.store, make_meeting(), web.ORG)


@pytest.fixture
def theirs(web: Web, make_meeting: MeetingFactory) -> Meeting:
    """A meeting of another org, on a record with the same id."""
    return _store_meeting(web.store, make_meeting(), web.OTHER_ORG)


# --- Salesforce Canvas and the session ------------------------------------------------


def test_canvas_post_opens_a_session_with_org_user_and_record(web: Web) -> None:
    web.login()
    me = web.client.get("/api/v1/me").json()
    assert me == {
        "crm": "salesforce",
        "org_id": web.ORG,
        "user_id": me["user_id"],
        "email": web.REP,
        "profile": None,
        "record": "Account/001A",
        "admin": False,
        "via": "session",
    }


def test_canvas_wrong_signature_is_401(web: Web) -> None:
    response = web.client.post(
        "/salesforce/canvas", data={"signed_request": web.crm.canvas(secret="not-the-secret")}
    )
    _error(response, 401, "unauthenticated")
    assert "set-cookie" not in response.headers


def test_canvas_stale_request_is_401(web: Web, clock: Clock) -> None:
    stale = web.crm.canvas(issued=clock() - timedelta(hours=1))
    _error(
        web.client.post("/salesforce/canvas", data={"signed_request": stale}),
        401,
        "unauthenticated",
    )


def test_canvas_replay_is_401(web: Web) -> None:
    signed = web.crm.canvas()
    first = web.client.post(
        "/salesforce/canvas", data={"signed_request": signed}, follow_redirects=False
    )
    assert first.status_code == 303
    web.client.cookies.clear()
    body = _error(
        web.client.post("/salesforce/canvas", data={"signed_request": signed}),
        401,
        "unauthenticated",
    )
    assert "already used" in body["message"]


def test_canvas_without_signed_request_is_422_in_the_error_shape(web: Web) -> None:
    body = _error(web.client.post("/salesforce/canvas", data={}), 422, "validation_error")
    assert body["field"] == "body.signed_request"


def test_no_credentials_is_401(web: Web) -> None:
    response = web.client.get("/api/v1/me")
    _error(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


def test_tampered_session_cookie_is_401(web: Web) -> None:
    web.login()
    value = web.client.cookies["cm_session"]
    web.client.cookies.set("cm_session", value[:-2] + ("A" if value[-2] != "A" else "B") + "x")
    _error(web.client.get("/api/v1/me"), 401, "unauthenticated")


def test_session_expires(web: Web, clock: Clock) -> None:
    web.login()
    clock.advance(minutes=31)
    body = _error(web.client.get("/api/v1/me"), 401, "unauthenticated")
    assert "expired" in body["message"]


def test_state_changing_request_without_csrf_is_403(web: Web, ours: Meeting) -> None:
    token = web.login()
    url = f"/api/v1/meetings/{ours.id}/sync"
    _error(web.client.post(url), 403, "permission_denied")
    _error(web.client.post(url, headers=web.csrf("wrong")), 403, "permission_denied")
    _error(web.client.post(url, headers=web.csrf(token)), 404, "no_session_exists")


# --- HubSpot v3 -------------------------------------------------------------------------

HUBSPOT_QUERY = (
    "?portalId=62515&userId=77&userEmail=olivia%40acme.example"
    "&associatedObjectType=Account&associatedObjectId=001A"
)


def test_hubspot_signed_call_is_accepted(web: Web) -> None:
    uri = "https://testserver/api/v1/me" + HUBSPOT_QUERY
    response = web.client.get(uri, headers=web.crm.hubspot("GET", uri))
    assert response.status_code == 200, response.text
    me = response.json()
    assert (me["crm"], me["org_id"], me["email"], me["via"]) == (
        "hubspot",
        "62515",
        web.REP,
        "hubspot",
    )
    assert me["record"] == "Account/001A"


@pytest.mark.parametrize("case", ["wrong_secret", "stale", "tampered_query"])
def test_hubspot_bad_signature_is_401(web: Web, clock: Clock, case: str) -> None:
    uri = "https://testserver/api/v1/me" + HUBSPOT_QUERY
    headers = {
        "wrong_secret": lambda: web.crm.hubspot("GET", uri, secret="nope"),
        "stale": lambda: web.crm.hubspot("GET", uri, at=clock() - timedelta(minutes=6)),
        "tampered_query": lambda: web.crm.hubspot("GET", uri.replace("62515", "1")),
    }[case]()
    _error(web.client.get(uri, headers=headers), 401, "unauthenticated")


def test_hubspot_replay_is_401(web: Web) -> None:
    uri = "https://testserver/api/v1/me" + HUBSPOT_QUERY
    headers = web.crm.hubspot("GET", uri)
    assert web.client.get(uri, headers=headers).status_code == 200
    _error(web.client.get(uri, headers=headers), 401, "unauthenticated")


def test_hubspot_entry_opens_the_panel(web: Web) -> None:
    uri = "https://testserver/hubspot/panel" + HUBSPOT_QUERY
    response = web.client.post(uri, headers=web.crm.hubspot("POST", uri), follow_redirects=False)
    assert response.status_code == 303
    assert web.client.get("/api/v1/me").json()["via"] == "session"


# --- Zoho widget tokens -----------------------------------------------------------------


def test_zoho_token_header_is_accepted(web: Web) -> None:
    me = web.client.get("/api/v1/me", headers={"X-Zoho-Widget-Token": web.crm.zoho()}).json()
    assert (me["crm"], me["org_id"], me["record"]) == ("zoho", web.ORG, "Account/001A")


@pytest.mark.parametrize("case", ["wrong_secret", "expired", "replayed"])
def test_zoho_bad_token_is_401(web: Web, clock: Clock, case: str) -> None:
    if case == "wrong_secret":
        token = web.crm.zoho(secret="nope")
    elif case == "expired":
        token = web.crm.zoho(at=clock() - timedelta(minutes=6))
    else:
        token = web.crm.zoho()
        web.client.get("/api/v1/me", headers={"X-Zoho-Widget-Token": token})
    response = web.client.get("/api/v1/me", headers={"X-Zoho-Widget-Token": token})
    _error(response, 401, "unauthenticated")


def test_zoho_entry_opens_the_panel(web: Web) -> None:
    response = web.client.get(f"/zoho/panel?token={web.crm.zoho()}", follow_redirects=False)
    assert response.status_code == 303
    assert web.client.get("/api/v1/me").json()["crm"] == "zoho"


# --- API keys ---------------------------------------------------------------------------


def _new_key(web: Web) -> tuple[int, str]:
    token = web.login(email=web.ADMIN)
    created = web.client.post(
        "/api/v1/admin/api-keys", json={"name": "nightly export"}, headers=web.csrf(token)
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith(body["prefix"])
    web.client.cookies.clear()
    return body["id"], body["key"]


def test_api_key_authenticates_and_is_stored_hashed(web: Web) -> None:
    key_id, key = _new_key(web)
    me = web.client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert (me["org_id"], me["via"], me["admin"]) == (web.ORG, "api_key", True)
    with web.store.transaction() as uow:
        row = uow.session.get(ApiKeyRow, key_id)
        assert row is not None
        assert key not in (row.key_hash, row.prefix)
        assert row.last_used_at is not None


def test_api_key_last_use_is_kept_to_the_minute_not_written_per_request(web: Web) -> None:
    """Each write takes the store's write lock: a read with a key writes at most once a minute."""
    key_id, key = _new_key(web)
    headers = {"Authorization": f"Bearer {key}"}

    def used(set_to: timedelta | None = None) -> datetime:
        with web.store.transaction() as uow:
            row = uow.session.get(ApiKeyRow, key_id)
            assert row is not None
            assert row.last_used_at is not None
            if set_to is not None:
                row.last_used_at -= set_to
            return row.last_used_at

    assert web.client.get("/api/v1/me", headers=headers).status_code == 200
    recent = used(set_to=timedelta(seconds=30))
    assert web.client.get("/api/v1/me", headers=headers).status_code == 200
    assert used() == recent, "used 30 s ago: not written again"
    stale = used(set_to=timedelta(minutes=2))
    assert web.client.get("/api/v1/me", headers=headers).status_code == 200
    assert used() > stale, "used over a minute ago: brought up to date"


def test_revoked_api_key_is_401(web: Web) -> None:
    key_id, key = _new_key(web)
    headers = {"Authorization": f"Bearer {key}"}
    revoked = web.client.delete(f"/api/v1/admin/api-keys/{key_id}", headers=headers)
    assert revoked.json()["revoked_at"] is not None
    body = _error(web.client.get("/api/v1/me", headers=headers), 401, "unauthenticated")
    assert "revoked" in body["message"]


@pytest.mark.parametrize("value", ["Bearer cmk_unknown", "Basic abc", "Bearer "])
def test_unknown_or_malformed_api_key_is_401(web: Web, value: str) -> None:
    _error(web.client.get("/api/v1/me", headers={"Authorization": value}), 401, "unauthenticated")


def test_api_keys_are_listed_per_org_without_the_key(web: Web) -> None:
    key_id, key = _new_key(web)
    listed = web.client.get("/api/v1/admin/api-keys", headers={"Authorization": f"Bearer {key}"})
    assert [k["id"] for k in listed.json()] == [key_id]
    assert key not in listed.text
    web.login(email=web.ADMIN, org=web.OTHER_ORG)
    assert web.client.get("/api/v1/admin/api-keys").json() == []
    _error(
        web.client.delete(f"/api/v1/admin/api-keys/{key_id}", headers=web.csrf(csrf_now(web))),
        404,
        "not_found",
    )


def csrf_now(web: Web) -> str:
    page = web.client.get("/panel").text
    marker = 'name="csrf-token" content="'
    begin = page.index(marker) + len(marker)
    return page[begin : page.index('"', begin)]


# --- meetings, org scoping ----------------------------------------------------------------


def test_record_meetings_are_the_orgs_only(web: Web, ours: Meeting, theirs: Meeting) -> None:
    web.login()
    listed = web.client.get("/api/v1/records/Account/001A/meetings").json()
    assert [m["id"] for m in listed] == [ours.id]
    assert listed[0]["invitees"][0]["crm_relation"] == "Contact/0031"
    assert web.client.get("/api/v1/records/Lead/none/meetings").json() == []


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/invitation"), ("GET", "/ics"), ("POST", "/sync")],
)
def test_other_orgs_meeting_is_404(web: Web, theirs: Meeting, method: str, suffix: str) -> None:
    token = web.login()
    response = web.client.request(
        method, f"/api/v1/meetings/{theirs.id}{suffix}", headers=web.csrf(token)
    )
    body = _error(response, 404, "not_found")
    assert theirs.subject not in response.text
    assert body["message"]


def test_read_meeting_with_sessions_and_participants(web: Web, ours: Meeting) -> None:
    session = Session(
        "zoom",
        "s-1",
        ours.provider_meeting_id or "p",
        ours.start,
        ours.start + timedelta(minutes=50),
        participants=(
            Participant(
                "Zed", ours.start, ours.start + timedelta(minutes=45), "zed@client.example"
            ),
        ),
    )
    with web.store.transaction() as uow:
        uow.sessions.upsert_many([session], ours.id)
    web.login()
    detail = web.client.get(f"/api/v1/meetings/{ours.id}").json()
    assert detail["subject"] == ours.subject
    assert detail["sessions"][0]["participants"][0] == {
        "name": "Zed",
        "email": "zed@client.example",
        "join_time": "2026-03-03T09:00:00Z",
        "leave_time": "2026-03-03T09:45:00Z",
        "minutes": 45,
    }
    synced = web.client.post(
        f"/api/v1/meetings/{ours.id}/sync", headers=web.csrf(csrf_now(web))
    ).json()
    assert synced["sessions"][0]["provider_session_id"] == "s-1"


def test_sync_without_sessions_says_no_session_exists(web: Web, ours: Meeting) -> None:
    token = web.login()
    body = _error(
        web.client.post(f"/api/v1/meetings/{ours.id}/sync", headers=web.csrf(token)),
        404,
        "no_session_exists",
    )
    assert body["message"] == f"No session exists for meeting {ours.id}."


def test_sync_uses_the_engine_when_given(
    store: Store, clock: Clock, crm: Any, ours: Meeting, settings: Settings
) -> None:
    ran: list[str] = []

    def engine(caller: Any, meeting: Meeting) -> list[Session]:
        ran.append(meeting.id)
        return []

    services = WebServices(sync_meeting=engine)
    app = create_app(settings, store=store, clock=clock, services=services)
    with TestClient(app, base_url="https://testserver") as client:
        headers = {"X-Zoho-Widget-Token": crm.zoho()}
        response = client.post(f"/api/v1/meetings/{ours.id}/sync", headers=headers)
    _error(response, 404, "no_session_exists")
    assert ran == [ours.id]


def test_sync_my_meetings(web: Web, ours: Meeting, make_meeting: MeetingFactory) -> None:
    token = web.login()
    body = web.client.post("/api/v1/sync", headers=web.csrf(token)).json()
    assert body == {
        "organizer": web.REP,
        "meetings": 1,
        "with_sessions": 0,
        "without_sessions": [ours.id],
    }


def test_invitation_text_and_ics(web: Web, ours: Meeting) -> None:
    web.login()
    text = web.client.get(f"/api/v1/meetings/{ours.id}/invitation")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.startswith(ours.subject)
    assert ours.join_url in text.text
    ics = web.client.get(f"/api/v1/meetings/{ours.id}/ics")
    assert ics.headers["content-type"].startswith("text/calendar")
    assert "attachment" in ics.headers["content-disposition"]
    event = icalendar.Calendar.from_ical(ics.content).walk("VEVENT")[0]
    assert str(event["UID"]) == ours.uid
    assert event.decoded("DTSTART").astimezone(UTC) == ours.start


def test_runs_are_the_orgs_newest_first(web: Web, clock: Clock) -> None:
    with web.store.transaction() as uow:
        first = uow.runs.start("nightly", org_id=web.ORG)
        uow.runs.finish(
            first,
            SyncRunStatus.PARTIAL,
            RunCounters(meetings_seen=3, errors=("zoom: timeout — retry",)),
        )
        uow.runs.start("nightly", org_id=web.OTHER_ORG)
    clock.advance(minutes=1)
    with web.store.transaction() as uow:
        second = uow.runs.start("manual", org_id=web.ORG, organizer=web.REP)
    web.login()
    runs = web.client.get("/api/v1/runs?limit=5").json()
    assert [r["id"] for r in runs] == [second, first]
    assert runs[1]["errors"] == ["zoom: timeout — retry"]
    _error(web.client.get("/api/v1/runs?limit=0"), 422, "validation_error")
