"""The connector against Zoho's published examples (recordings/zoho), over a mock transport.

Each test checks the request the connector sends against the documented one and parses the
documented response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crm_meetings.connectors.zoho import ZohoConnector, ZohoCredentials
from crm_meetings.errors import RemoteError, ValidationError
from crm_meetings.model import CrmKind, Person, new_meeting
from crm_meetings.transport import RetryPolicy

from .conftest import recording

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
Handler = Callable[[httpx.Request], httpx.Response]


def replaying(*names: str, seen: list[httpx.Request]) -> Handler:
    answers = iter(recording(n)["response"] for n in names)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(answers)
        return httpx.Response(answer["status"], json=answer["body"])

    return handle


def connector(handler: Handler, **kwargs: Any) -> ZohoConnector:
    return ZohoConnector(
        ZohoCredentials("1000.ID", "secret", "1000.refresh", "1000.access"),
        transport=httpx.MockTransport(handler),
        retry_policy=RetryPolicy(attempts=3, base=0.0, cap=0.0),
        **kwargs,
    )


def meetings(n: int) -> list[Any]:
    return [
        new_meeting(
            crm=CrmKind.ZOHO,
            subject=f"M{i}",
            start=T0,
            end=T0 + timedelta(hours=1),
            timezone="UTC",
            organizer=Person("rep@x.example"),
            now=T0,
            id_factory=lambda i=i: f"m{i}",
        )
        for i in range(n)
    ]


def test_insert_sends_the_documented_request_and_reads_mixed_results() -> None:
    seen: list[httpx.Request] = []
    results = connector(replaying("insert_207.json", seen=seen)).create_many(meetings(2))
    (request,) = seen
    assert (request.method, request.url.path) == ("POST", "/crm/v8/Events")
    assert request.url.host == "www.zohoapis.com"
    assert request.headers["Authorization"] == "Zoho-oauthtoken 1000.access"
    assert [r["Event_Title"] for r in json.loads(request.content)["data"]] == ["M0", "M1"]
    assert [(r.ok, r.record_id) for r in results] == [(True, "5725767000000524157"), (False, None)]
    error = results[1].error
    assert isinstance(error, ValidationError)
    assert error.field == "Last_Name"


def test_a_replayed_insert_counts_as_created() -> None:
    body = recording("insert_duplicate.json")
    body["response"]["body"]["data"][0]["details"]["api_name"] = "CRM_Meetings_Id"
    handler = lambda request: httpx.Response(400, json=body["response"]["body"])  # noqa: E731
    (result,) = connector(handler).create_many(meetings(1))
    assert (result.ok, result.record_id) == (True, "2008662000006256222")


def test_refresh_reads_the_documented_token_response() -> None:
    seen: list[httpx.Request] = []
    zoho = connector(replaying("token_refresh.json", seen=seen), data_center="eu")
    assert zoho.refresh() == "{new_access_token}"
    assert str(seen[0].url) == "https://accounts.zoho.eu/oauth/v2/token"
    assert dict(httpx.QueryParams(seen[0].content.decode()))["grant_type"] == "refresh_token"
    assert zoho.api_url == "https://www.zohoapis.com"  # the api_domain Zoho answered


def test_rate_limit_waits_for_details_retry_after() -> None:
    seen: list[httpx.Request] = []
    waits: list[float] = []
    zoho = connector(
        replaying("rate_limited_429.json", "update_200.json", seen=seen), sleep=waits.append
    )
    (meeting,) = meetings(1)
    meeting = meeting.__class__(**{**_fields(meeting), "crm_record_id": "5725767000000524157"})
    moved, change = meeting.revise(subject="Moved")
    assert zoho.update(moved, change).crm_modified_at is not None
    assert waits == [60.0]
    assert [r.method for r in seen] == ["PUT", "PUT"]


def _fields(meeting: Any) -> dict[str, Any]:
    return {name: getattr(meeting, name) for name in meeting.__dataclass_fields__}


def test_deleted_records_become_deleted_ids() -> None:
    seen: list[httpx.Request] = []
    handler = replaying("get_records_200.json", "deleted_200.json", seen=seen)
    pages = list(
        connector(
            lambda r: _not_modified(r, seen) if r.url.path == "/crm/v8/Events" else handler(r)
        ).changed_since("2026-11-01T00:00:00+00:00")
    )
    assert pages[-1].deleted == ("410888000000099071", "410888000000680013")
    assert seen[0].headers["If-Modified-Since"] == "2026-10-31T23:59:59+00:00"
    assert pages[-1].cursor == "2026-11-01T00:00:00+00:00"  # never behind the given cursor


def _not_modified(request: httpx.Request, seen: list[httpx.Request]) -> httpx.Response:
    seen.append(request)
    return httpx.Response(304)


def test_discrete_paging_limit_is_a_clear_error() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(RemoteError) as info:
        list(connector(replaying("get_records_discrete_limit.json", seen=seen)).changed_since(None))
    assert info.value.vendor_code == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    assert seen[0].url.params["fields"]  # fields is required by GET /{module}
