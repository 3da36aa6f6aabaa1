"""The providers against the recorded vendor answers: they send what the vendor documents
and parse what it returns (httpx.MockTransport serves recordings/zoom and recordings/goto)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

from crm_meetings.conferencing import (
    AccountCredentials,
    GoToProvider,
    HttpSettings,
    RefreshTokenGrant,
    ZoomProvider,
)
from crm_meetings.model import CrmKind, Person, new_meeting

RECORDINGS = Path(__file__).parents[2] / "recordings"
T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def recorded(vendor: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / vendor / f"{name}.json").read_text())
    return data


def reply(vendor: str, name: str, **changes: Any) -> httpx.Response:
    response = recorded(vendor, name)["response"]
    body = response.get("body")
    if isinstance(body, dict):
        body = {**body, **changes}
    return httpx.Response(response["status"], json=body, headers=response.get("headers"))


Route = tuple[str, str, Callable[[httpx.Request], httpx.Response]]


class Recorder:
    """A MockTransport that answers by (method, raw path) and keeps every request."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.split(b"?")[0].decode()
        for method, wanted, answer in self.routes:
            if request.method == method and path == wanted:
                return answer(request)
        return httpx.Response(404, json={"code": 404, "message": f"unrecorded {path}"})

    def settings(self) -> HttpSettings:
        return HttpSettings(
            api_url="https://api.example", token_url="https://auth.example/oauth/token",
            transport=httpx.MockTransport(self), sleep=lambda _: None,
        )  # fmt: skip


def a_meeting() -> Any:
    return new_meeting(
        crm=CrmKind.SALESFORCE, subject="Discovery call", start=T0,
        end=T0 + timedelta(hours=1), timezone="America/Los_Angeles",
        organizer=Person("jchill@example.com"), now=T0, description="My Meeting",
    )  # fmt: skip


def test_zoom_token_request_is_account_credentials() -> None:
    transport = Recorder([("POST", "/oauth/token", lambda r: reply("zoom", "oauth_token"))])
    provider = ZoomProvider(AccountCredentials("acct-1", "id", "secret"), transport.settings())
    assert provider.api.token().startswith("eyJ")
    (request,) = transport.requests
    assert str(request.url).startswith("https://auth.example/oauth/token?")
    assert parse_qs(request.url.query.decode()) == {
        "grant_type": ["account_credentials"], "account_id": ["acct-1"],
    }  # fmt: skip
    assert request.headers["authorization"].startswith("Basic ")


def test_zoom_create_sends_the_documented_body_and_reads_the_answer() -> None:
    sent: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return reply("zoom", "create_meeting")

    transport = Recorder([
        ("POST", "/oauth/token", lambda r: reply("zoom", "oauth_token")),
        ("POST", "/v2/users/jchill%40example.com/meetings", create),
    ])  # fmt: skip
    provider = ZoomProvider(AccountCredentials("a", "b", "c"), transport.settings())
    created = provider.create_meeting(a_meeting())
    documented = recorded("zoom", "create_meeting")["request"]["body"]
    assert set(sent[0]) == set(documented)
    assert sent[0]["start_time"] == "2026-11-20T15:00:00Z"
    assert (created.id, created.join_url, created.password) == (
        "92674392836", "https://example.com/j/11111", "123456",
    )  # fmt: skip
    assert created.dial_in == ("US: +1 1000200200",)


def test_zoom_sessions_double_encode_and_parse_the_recorded_answers() -> None:
    details = recorded("zoom", "past_meeting_details")["response"]["body"]
    routes: list[Route] = [
        ("POST", "/oauth/token", lambda r: reply("zoom", "oauth_token")),
        ("GET", "/v2/past_meetings/85746065432/instances",
         lambda r: reply("zoom", "past_meeting_instances")),
    ]  # fmt: skip
    for uuid, segment in (
        ("aDYlohsHRtCd4ii1uC2+hA==", "aDYlohsHRtCd4ii1uC2%2BhA%3D%3D"),
        ("/ajXp112QmuoKj4854875==", "%252FajXp112QmuoKj4854875%253D%253D"),
    ):
        routes.append(
            ("GET", f"/v2/past_meetings/{segment}",
             lambda r, u=uuid: reply("zoom", "past_meeting_details", uuid=u))
        )  # fmt: skip
        routes.append(
            ("GET", f"/v2/report/meetings/{segment}/participants",
             lambda r: reply("zoom", "report_meeting_participants"))
        )  # fmt: skip
    transport = Recorder(routes)
    provider = ZoomProvider(AccountCredentials("a", "b", "c"), transport.settings())
    sessions = provider.sessions("85746065432")
    assert [s.provider_session_id for s in sessions] == [
        "aDYlohsHRtCd4ii1uC2+hA==", "/ajXp112QmuoKj4854875==",
    ]  # fmt: skip
    first = sessions[0]
    assert first.start.isoformat() == details["start_time"].replace("Z", "+00:00")
    (person,) = first.participants
    assert (person.name, person.email, person.seconds_attended) == (
        "Jill Chill", "jchill@example.com", 2340,
    )  # fmt: skip
    participant_calls = [r for r in transport.requests if r.url.path.endswith("/participants")]
    assert all(r.url.params["page_size"] == "300" for r in participant_calls)


def test_zoom_meetings_ran_reads_the_user_report() -> None:
    transport = Recorder([
        ("POST", "/oauth/token", lambda r: reply("zoom", "oauth_token")),
        ("GET", "/v2/report/users/jchill%40example.com/meetings",
         lambda r: reply("zoom", "report_user_meetings")),
    ])  # fmt: skip
    provider = ZoomProvider(AccountCredentials("a", "b", "c"), transport.settings())
    since = datetime(2026, 11, 1, tzinfo=UTC)
    (ran,) = provider.meetings_ran("jchill@example.com", since, since + timedelta(days=30))
    assert (ran.id, ran.topic) == ("80000000002", "My meeting")
    request = transport.requests[-1]
    assert dict(request.url.params) == {
        "type": "past", "from": "2026-11-01", "to": "2026-11-30", "page_size": "300",
    }  # fmt: skip


def goto_routes(*extra: Route) -> Recorder:
    return Recorder([("POST", "/oauth/token", lambda r: reply("goto", "oauth_token")), *extra])


def test_goto_refresh_rotates_the_refresh_token() -> None:
    rotated: list[str] = []
    transport = goto_routes()
    grant = RefreshTokenGrant("id", "secret", "old-refresh", on_rotate=rotated.append)
    GoToProvider(grant, transport.settings()).api.token()
    (request,) = transport.requests
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["refresh_token"], "refresh_token": ["old-refresh"],
    }  # fmt: skip
    assert request.headers["authorization"].startswith("Basic ")
    assert rotated == ["eyJraWQiOiJvYXV0aHYyLmxt.refresh"]
    assert grant.refresh_token == rotated[0]


def test_goto_create_sends_the_documented_body() -> None:
    sent: list[dict[str, Any]] = []

    def create(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return reply("goto", "create_meeting")

    transport = goto_routes(("POST", "/G2M/rest/v2/meetings", create))
    provider = GoToProvider(RefreshTokenGrant("i", "s", "r"), transport.settings())
    created = provider.create_meeting(a_meeting())
    assert sent == [recorded("goto", "create_meeting")["request"]["body"]]
    assert (created.id, created.join_url) == (
        "123456789", "https://global.gotomeeting.com/join/123456789",
    )  # fmt: skip
    assert created.dial_in == ("US: +1 (571) 317-3112", "Access Code: 123-456-789")


def test_goto_history_parses_the_recorded_answers() -> None:
    transport = goto_routes(
        ("GET", "/G2M/rest/v2/organizers", lambda r: reply("goto", "organizer_by_email")),
        ("GET", "/G2M/rest/v2/organizers/3697511743350317068/historicalMeetings",
         lambda r: reply("goto", "historical_meetings_by_organizer")),
        ("GET", "/G2M/rest/v2/meetings/500000001/attendees",
         lambda r: reply("goto", "attendees_by_meeting")),
    )  # fmt: skip
    provider = GoToProvider(RefreshTokenGrant("i", "s", "r"), transport.settings())
    since = datetime(2026, 11, 1, tzinfo=UTC)
    (ran,) = provider.meetings_ran("rep1@sales.example.com", since, since + timedelta(days=30))
    assert (ran.id, ran.topic) == ("500000001", "Demo with Globex 1")
    assert dict(transport.requests[-1].url.params) == {
        "startDate": "2026-11-01T00:00:00Z", "endDate": "2026-12-01T00:00:00Z",
    }  # fmt: skip
    (session,) = provider.sessions("500000001")
    assert session.provider_session_id == "50000000101"
    assert (session.start, session.end) == (
        datetime(2026, 11, 2, 8, 31, tzinfo=UTC), datetime(2026, 11, 2, 9, 2, tzinfo=UTC),
    )  # fmt: skip
    (person,) = session.participants
    assert (person.name, person.email, person.minutes_attended) == (
        "Kofi Sato", "contact1@globex1.example.net", 28,
    )  # fmt: skip
