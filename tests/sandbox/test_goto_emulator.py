"""The GoTo Meeting emulator through plain httpx over HTTPS: paths, shapes, errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.goto import API, GoToEmulator
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory

SEED = SeedSpec(seed=5, meetings=24, organizers=2, records=5, started_share=0.7, provider="goto")
HOST = "rep1@sales.example.com"
WINDOW = {"startDate": "2026-11-01T00:00:00Z", "endDate": "2026-12-01T00:00:00Z"}
CREATE = {
    "subject": "Discovery call",
    "starttime": "2026-11-20T15:00:00Z",
    "endtime": "2026-11-20T16:00:00Z",
    "passwordrequired": False,
    "conferencecallinfo": "Hybrid",
    "timezonekey": "",
    "meetingtype": "scheduled",
}


@pytest.fixture
def box(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory(["goto"], seed=SEED)


@pytest.fixture
def client(box: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {box.token('goto', subject=HOST)}"}
    with httpx.Client(base_url=box.url("goto"), verify=box.ssl_context(), headers=headers) as c:
        yield c


def emulator(box: Sandbox) -> GoToEmulator:
    found = box.emulator("goto")
    assert isinstance(found, GoToEmulator)
    return found


def test_refresh_token_grant(box: Sandbox) -> None:
    refresh = box.refresh_token("goto", subject=HOST)
    basic = {"Authorization": "Basic " + base64.b64encode(b"client:secret").decode()}
    with httpx.Client(base_url=box.url("goto"), verify=box.ssl_context()) as c:
        ok = c.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh},
                    headers=basic)  # fmt: skip
        assert ok.status_code == 200
        body = ok.json()
        assert body["principal"] == HOST
        assert body["organizer_key"] == str(emulator(box).organizer_key(HOST))
        assert body["refresh_token"] == refresh
        bad = c.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                     headers=basic)  # fmt: skip
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")
        no_client = c.post("/oauth/token", data={"grant_type": "refresh_token",
                                                 "refresh_token": refresh})  # fmt: skip
        assert no_client.status_code == 401


def test_invalid_token_body(box: Sandbox, client: httpx.Client) -> None:
    answer = client.get(f"{API}/upcomingMeetings", headers={"Authorization": "Bearer expired"})
    assert answer.status_code == 401
    assert answer.json() == {"int_err_code": "InvalidToken", "msg": "Invalid token passed"}


def test_organizer_by_email(client: httpx.Client, box: Sandbox) -> None:
    (row,) = client.get(f"{API}/organizers", params={"email": HOST.upper()}).json()
    assert row["organizerKey"] == emulator(box).organizer_key(HOST)
    assert row["products"] == ["G2M"]
    missing = client.get(f"{API}/organizers", params={"email": "nobody@example.com"})
    assert (missing.status_code, missing.json()["int_err_code"]) == (404, "NotFound")


def test_meeting_lifecycle(box: Sandbox, client: httpx.Client) -> None:
    created = client.post(f"{API}/meetings", json=CREATE)
    assert created.status_code == 201
    (meeting,) = created.json()
    assert set(meeting) == {"joinURL", "meetingid", "maxParticipants", "uniqueMeetingId",
                            "conferenceCallInfo"}  # fmt: skip
    path = f"{API}/meetings/{meeting['meetingid']}"
    (stored,) = client.get(path).json()
    assert stored["subject"] == "Discovery call"
    assert box.state("goto")["meetings"][str(meeting["meetingid"])]["organizerEmail"] == HOST
    moved = {**CREATE, "subject": "Discovery &lt;v2&gt;", "endtime": "2026-11-20T16:30:00Z"}
    assert client.put(path, json=moved).status_code == 204
    (stored,) = client.get(path).json()
    assert (stored["subject"], stored["duration"]) == ("Discovery <v2>", 90)
    later = {**CREATE, "starttime": "2099-01-05T15:00:00Z", "endtime": "2099-01-05T16:00:00Z"}
    (future,) = client.post(f"{API}/meetings", json=later).json()
    upcoming = {m["meetingId"] for m in client.get(f"{API}/upcomingMeetings").json()}
    assert str(future["meetingid"]) in upcoming
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404
    assert client.delete(path).status_code == 404


@pytest.mark.parametrize(
    "change",
    [{"subject": "x" * 101}, {"subject": "a <b>"}, {"endtime": "2026-11-20T14:00:00Z"},
     {"starttime": "tomorrow"}],
)  # fmt: skip
def test_invalid_meetings_are_refused(client: httpx.Client, change: dict[str, object]) -> None:
    answer = client.post(f"{API}/meetings", json={**CREATE, **change})
    assert (answer.status_code, answer.json()["int_err_code"]) == (400, "InvalidRequest")
    missing = client.post(f"{API}/meetings", json={"subject": "no times"})
    assert "starttime" in missing.json()["msg"]


def test_historical_meetings_are_one_row_per_session(box: Sandbox, client: httpx.Client) -> None:
    key = emulator(box).organizer_key(HOST)
    rows = client.get(f"{API}/organizers/{key}/historicalMeetings", params=WINDOW).json()
    data = box.data
    assert data is not None
    user = next(u.key for u in data.users if u.email == HOST)
    expected = sum(len(m.sessions) for m in data.meetings if m.organizer == user)
    assert len(rows) == expected > 0
    assert len({r["sessionId"] for r in rows}) == len(rows)
    assert all(isinstance(r["duration"], str) and r["email"] == HOST for r in rows)
    assert [r["startTime"] for r in rows] == sorted(r["startTime"] for r in rows)
    own = client.get(f"{API}/historicalMeetings", params=WINDOW).json()
    assert own == rows  # the token's organizer
    narrow = {"startDate": rows[1]["startTime"], "endDate": rows[-2]["startTime"]}
    assert len(client.get(f"{API}/historicalMeetings", params=narrow).json()) == len(rows) - 2
    assert client.get(f"{API}/historicalMeetings").status_code == 400
    assert client.get(f"{API}/organizers/1/historicalMeetings", params=WINDOW).status_code == 404


def test_attendees_carry_the_session_as_meeting_instance_key(
    box: Sandbox, client: httpx.Client
) -> None:
    data = box.data
    assert data is not None
    meeting = next(m for m in data.meetings if len(m.sessions) >= 2)
    rows = client.get(f"{API}/meetings/{meeting.provider_meeting_id}/attendees").json()
    assert len(rows) == sum(len(s.participants) for s in meeting.sessions)
    sessions = {r["meetingInstanceKey"] for r in rows}
    assert len(sessions) == len(meeting.sessions)
    assert all(isinstance(r["duration"], int) for r in rows)
    assert {r["attendeeEmail"] for r in rows} >= {"", meeting.invitees[0][1]}
    never = next(m for m in data.meetings if not m.started)
    missing = client.get(f"{API}/meetings/{never.provider_meeting_id}/attendees")
    assert (missing.status_code, missing.json()["int_err_code"]) == (404, "NotFound")
    assert client.get(f"{API}/meetings/{never.provider_meeting_id}").status_code == 200


def test_attendees_by_organizer_are_every_session_in_the_window(
    box: Sandbox, client: httpx.Client
) -> None:
    """GoTo's "Get attendees by organizer": one row per attendee of each session that
    started in the window, keyed by meetingInstanceKey (the historical rows' sessionId)."""
    key = emulator(box).organizer_key(HOST)
    rows = client.get(f"{API}/organizers/{key}/attendees", params=WINDOW).json()
    history = client.get(f"{API}/organizers/{key}/historicalMeetings", params=WINDOW).json()
    data = box.data
    assert data is not None
    user = next(u.key for u in data.users if u.email == HOST)
    mine = [m for m in data.meetings if m.organizer == user]
    assert len(rows) == sum(len(s.participants) for m in mine for s in m.sessions) > 0
    assert {str(r["meetingInstanceKey"]) for r in rows} == {h["sessionId"] for h in history}
    assert {r["name"] for r in rows} == {"Ben Okafor"}  # the organizer's name, not the attendee's
    assert all(r["newMeetingId"].count("-") == 2 and r["email"] == HOST for r in rows)
    never = {int(m.provider_meeting_id) for m in mine if not m.started}
    assert never
    assert not never & {r["meetingId"] for r in rows}  # a meeting never started: no rows
    first = history[0]
    only = {"startDate": first["startTime"], "endDate": first["startTime"]}
    narrow = client.get(f"{API}/organizers/{key}/attendees", params=only).json()
    assert {str(r["meetingInstanceKey"]) for r in narrow} == {first["sessionId"]}
    assert client.get(f"{API}/organizers/{key}/attendees").status_code == 400
    assert client.get(f"{API}/organizers/1/attendees", params=WINDOW).status_code == 404


def test_a_session_still_running_is_not_historical_yet(box: Sandbox, client: httpx.Client) -> None:
    data = box.data
    assert data is not None
    user = next(u.key for u in data.users if u.email == HOST)
    never = next(m for m in data.meetings if m.organizer == user and not m.started)
    now = box.env.clock()
    emulator(box).record_session(never.provider_meeting_id, now - timedelta(minutes=5),
                                 now + timedelta(minutes=55), ())  # fmt: skip
    window = {
        "startDate": WINDOW["startDate"],
        "endDate": f"{now + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
    }
    rows = client.get(f"{API}/historicalMeetings", params=window).json()
    assert never.provider_meeting_id not in {r["meetingId"] for r in rows}
    assert len(rows) == sum(len(m.sessions) for m in data.meetings if m.organizer == user)


def test_rate_limit_fault(box: Sandbox, client: httpx.Client) -> None:
    box.set_faults("goto", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED,
                                     retry_after=3))  # fmt: skip
    limited = client.get(f"{API}/upcomingMeetings")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json()["int_err_code"] == "TooManyRequests"
    box.set_faults("goto", FaultPlan(fail_next=1, fail_kind=FaultKind.SERVER_ERROR))
    assert client.get(f"{API}/upcomingMeetings").status_code == 500
    assert client.get(f"{API}/upcomingMeetings").status_code == 200
    counts = box.call_counts("goto")
    assert counts[("GET", f"{API}/upcomingMeetings")] == 3


def test_record_session_and_state(box: Sandbox, client: httpx.Client) -> None:
    data = box.data
    assert data is not None
    never = next(m for m in data.meetings if not m.started)
    other = next(m for m in data.meetings if m.started)
    session = other.sessions[0]
    key = emulator(box).record_session(
        never.provider_meeting_id, session.start, session.end, session.participants
    )
    rows = client.get(f"{API}/meetings/{never.provider_meeting_id}/attendees").json()
    assert {str(r["meetingInstanceKey"]) for r in rows} == {key}
    state = box.state("goto")
    json.dumps(state)
    assert len(state["meetings"][never.provider_meeting_id]["sessions"]) == 1
