"""The Zoom emulator through plain httpx over HTTPS: paths, paging, limits, errors, UUIDs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest

from crm_meetings.conferencing.webhooks import parse_meeting_ended, verify_zoom_signature
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory
from crm_meetings.sandbox.zoom import MAX_PAGE_SIZE, ZoomEmulator

SEED = SeedSpec(seed=11, meetings=30, organizers=2, records=5, started_share=0.7, provider="zoom")


@pytest.fixture
def box(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory(["zoom"], seed=SEED)


@pytest.fixture
def client(box: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {box.token('zoom')}"}
    with httpx.Client(base_url=box.url("zoom"), verify=box.ssl_context(), headers=headers) as c:
        yield c


def emulator(box: Sandbox) -> ZoomEmulator:
    found = box.emulator("zoom")
    assert isinstance(found, ZoomEmulator)
    return found


def started(box: Sandbox, *, sessions: int = 1) -> str:
    data = box.data
    assert data is not None
    return next(m.provider_meeting_id for m in data.meetings if len(m.sessions) >= sessions)


# --- OAuth ------------------------------------------------------------------------------


def test_account_credentials_grant(box: Sandbox) -> None:
    secret = box.refresh_token("zoom")
    basic = base64.b64encode(f"client-id:{secret}".encode()).decode()
    with httpx.Client(base_url=box.url("zoom"), verify=box.ssl_context()) as c:
        ok = c.post(
            "/oauth/token",
            params={"grant_type": "account_credentials", "account_id": "acct"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert ok.status_code == 200
        body = ok.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 3599
        me = c.get("/v2/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200
        refused = c.post(
            "/oauth/token",
            params={"grant_type": "account_credentials", "account_id": "acct"},
            headers={"Authorization": "Basic " + base64.b64encode(b"id:wrong").decode()},
        )
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_client"
        no_account = c.post("/oauth/token", params={"grant_type": "account_credentials"})
        assert no_account.status_code == 400


def test_requests_without_a_live_token_get_code_124(box: Sandbox, client: httpx.Client) -> None:
    bare = client.get("/v2/users/me", headers={"Authorization": "Bearer nope"})
    assert bare.status_code == 401
    assert bare.json()["code"] == 124
    box.expire_tokens("zoom")
    assert client.get("/v2/users/me").status_code == 401


# --- meetings ---------------------------------------------------------------------------


def test_meeting_lifecycle(box: Sandbox, client: httpx.Client) -> None:
    host = "rep0@sales.example.com"
    created = client.post(
        f"/v2/users/{host}/meetings",
        json={"topic": "Kick-off", "type": 2, "start_time": "2026-11-20T15:00:00Z",
              "duration": 30, "timezone": "Europe/Paris"},
    )  # fmt: skip
    assert created.status_code == 201
    meeting = created.json()
    assert meeting["host_email"] == host
    assert meeting["settings"]["global_dial_in_numbers"]
    path = f"/v2/meetings/{meeting['id']}"
    assert client.patch(path, json={"topic": "Kick-off (v2)", "duration": 45}).status_code == 204
    assert client.get(path).json()["topic"] == "Kick-off (v2)"
    assert client.put(path + "/status", json={"action": "end"}).status_code == 204
    assert client.delete(path, params={"cancel_meeting_reminder": "true"}).status_code == 204
    gone = client.get(path)
    assert gone.status_code == 404
    assert gone.json()["code"] == 3001
    assert box.state("zoom")["meetings"][str(meeting["id"])]["cancel_meeting_reminder"] is True
    assert client.delete(path).status_code == 404


def test_validation_errors_name_the_field(client: httpx.Client) -> None:
    too_long = client.post(
        "/v2/users/rep0@sales.example.com/meetings",
        json={"topic": "x" * 201, "start_time": "2026-11-20T15:00:00Z", "duration": 30},
    )
    assert too_long.status_code == 400
    assert too_long.json()["code"] == 300
    assert too_long.json()["errors"][0]["field"] == "topic"
    assert client.get("/v2/users/nobody@example.com/meetings").json()["code"] == 1001


def test_list_meetings_pages_with_next_page_token(client: httpx.Client) -> None:
    url = "/v2/users/rep0@sales.example.com/meetings"
    whole = client.get(url, params={"page_size": 300}).json()
    total = whole["total_records"]
    assert total == len(whole["meetings"]) > 3
    seen: list[int] = []
    token = ""
    while True:
        page = client.get(url, params={"page_size": 2, "next_page_token": token}).json()
        assert len(page["meetings"]) <= 2
        seen += [m["id"] for m in page["meetings"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == [m["id"] for m in whole["meetings"]]
    assert client.get(url, params={"page_size": 5000}).json()["page_size"] == MAX_PAGE_SIZE
    bad = client.get(url, params={"next_page_token": "forged"})
    assert bad.status_code == 400
    assert bad.json()["code"] == 300


# --- past meetings, the UUID rule, reports ----------------------------------------------


def test_instances_of_a_meeting(box: Sandbox, client: httpx.Client) -> None:
    meeting_id = started(box, sessions=2)
    rows = client.get(f"/v2/past_meetings/{meeting_id}/instances").json()["meetings"]
    assert [r["uuid"] for r in rows] == emulator(box).instance_uuids(meeting_id)
    assert set(rows[0]) == {"uuid", "start_time"}
    data = box.data
    assert data is not None
    never = next(m.provider_meeting_id for m in data.meetings if not m.started)
    assert client.get(f"/v2/past_meetings/{never}/instances").json() == {"meetings": []}
    unknown = client.get("/v2/past_meetings/12345678901/instances")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == 3001


def _uuids(box: Sandbox) -> list[str]:
    zoom = emulator(box)
    return [u for m in zoom.meetings for u in zoom.instance_uuids(m)]


def test_seeded_uuids_exercise_the_double_encoding_rule(box: Sandbox) -> None:
    uuids = _uuids(box)
    assert any(u.startswith("/") for u in uuids)
    assert any("//" in u for u in uuids)
    assert any("/" not in u for u in uuids)


@pytest.mark.parametrize("endpoint", ["/v2/past_meetings/{}", "/v2/report/meetings/{}/participants",
                                      "/v2/past_meetings/{}/participants"])  # fmt: skip
def test_double_encoded_uuids_work_single_encoded_ones_404(
    box: Sandbox, client: httpx.Client, endpoint: str
) -> None:
    for uuid in _uuids(box):
        once = quote(uuid, safe="")
        twice = quote(once, safe="")
        assert client.get(endpoint.format(twice)).status_code == 200, uuid
        single = client.get(endpoint.format(once))
        if uuid.startswith("/") or "//" in uuid:
            assert single.status_code == 404, uuid
            assert single.json()["code"] == 3001
        else:
            assert single.status_code == 200, uuid


def test_past_meeting_details_by_id_is_the_latest_instance(
    box: Sandbox, client: httpx.Client
) -> None:
    meeting_id = started(box, sessions=2)
    details = client.get(f"/v2/past_meetings/{meeting_id}").json()
    assert details["uuid"] == emulator(box).instance_uuids(meeting_id)[-1]
    assert details["participants_count"] >= 2
    assert details["end_time"] > details["start_time"]


def test_participant_report_pages_and_durations_in_seconds(
    box: Sandbox, client: httpx.Client
) -> None:
    uuid = quote(quote(emulator(box).instance_uuids(started(box))[0], safe=""), safe="")
    url = f"/v2/report/meetings/{uuid}/participants"
    everyone = client.get(url, params={"page_size": 300}).json()
    first = client.get(url, params={"page_size": 1}).json()
    assert first["total_records"] == everyone["total_records"] == len(everyone["participants"])
    assert len(first["participants"]) == 1
    assert first["next_page_token"]
    person = everyone["participants"][0]
    assert set(person) >= {"id", "user_id", "name", "user_email", "join_time", "leave_time",
                           "duration"}  # fmt: skip
    assert isinstance(person["duration"], int)
    assert person["duration"] % 60 == 0  # the seed's whole minutes, in seconds
    assert everyone["next_page_token"] == ""


def test_user_report_of_past_meetings(box: Sandbox, client: httpx.Client) -> None:
    url = "/v2/report/users/rep0@sales.example.com/meetings"
    month = {"from": "2026-11-01", "to": "2026-11-30", "type": "past"}
    rows = client.get(url, params={**month, "page_size": 300}).json()
    assert rows["from"] == "2026-11-01"
    assert rows["total_records"] == len(rows["meetings"]) > 0
    paged: list[str] = []
    token = ""
    while True:
        page = client.get(url, params={**month, "page_size": 2, "next_page_token": token}).json()
        paged += [m["uuid"] for m in page["meetings"]]
        token = page["next_page_token"]
        if not token:
            break
    assert paged == [m["uuid"] for m in rows["meetings"]]
    too_long = client.get(url, params={"from": "2026-11-01", "to": "2027-01-15"})
    assert too_long.status_code == 400
    assert client.get(url).status_code == 400


# --- faults and call accounting ----------------------------------------------------------


def test_rate_limit_fault_has_zooms_headers(box: Sandbox, client: httpx.Client) -> None:
    box.set_faults("zoom", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED,
                                     retry_after=2))  # fmt: skip
    limited = client.get("/v2/users/me")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.json()["code"] == 429
    assert client.get("/v2/users/me").status_code == 200
    assert box.calls.count("zoom", endpoint="/v2/users/{userId}", status=429) == 1


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [(FaultKind.UNAUTHORIZED, 401, 124), (FaultKind.SERVER_ERROR, 503, 503)],
)
def test_other_faults_use_zooms_body(
    box: Sandbox, client: httpx.Client, kind: FaultKind, status: int, code: int
) -> None:
    box.set_faults("zoom", FaultPlan(fail_next=1, fail_kind=kind))
    answer = client.get("/v2/users/me")
    assert (answer.status_code, answer.json()["code"]) == (status, code)


# --- webhook helper and state ------------------------------------------------------------


def test_post_meeting_ended_is_signed(box: Sandbox) -> None:
    received: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200)

    meeting_id = started(box)
    with httpx.Client(transport=httpx.MockTransport(handler)) as hook_client:
        emulator(box).post_meeting_ended(
            "https://crm-meetings.example/hooks/zoom", meeting_id, secret="s3cret",
            timestamp=1_794_215_100, client=hook_client,
        )  # fmt: skip
    (request,) = received
    verify_zoom_signature(
        request.headers, request.content, secret="s3cret",
        now=datetime.fromtimestamp(1_794_215_100, UTC),
    )  # fmt: skip
    ended = parse_meeting_ended(request.content)
    assert ended.meeting_id == meeting_id
    assert ended.uuid == emulator(box).instance_uuids(meeting_id)[-1]


def test_record_session_and_state(box: Sandbox, client: httpx.Client) -> None:
    data = box.data
    assert data is not None
    never = next(m for m in data.meetings if not m.started)
    other = next(m for m in data.meetings if m.started)
    uuid = emulator(box).record_session(
        never.provider_meeting_id, other.sessions[0].start, other.sessions[0].end,
        other.sessions[0].participants,
    )  # fmt: skip
    rows = client.get(f"/v2/past_meetings/{never.provider_meeting_id}/instances").json()
    assert [r["uuid"] for r in rows["meetings"]] == [uuid]
    state = box.state("zoom")
    json.dumps(state)  # JSON-ready
    assert len(state["meetings"][never.provider_meeting_id]["instances"]) == 1
    assert {u["email"] for u in state["users"]} == {u.email for u in data.users}
