"""The HubSpot emulator over plain HTTPS (httpx): statuses, bodies, headers, limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox

RECORDINGS = Path(__file__).parents[2] / "recordings" / "hubspot"
MEETINGS = "/crm/v3/objects/meetings"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(["hubspot"], seed=SeedSpec(seed=5, meetings=30, records=3)).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def client(box: Sandbox) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {box.token('hubspot')}"}
    with httpx.Client(base_url=box.url("hubspot"), verify=box.ssl_context(), headers=auth) as c:
        yield c


def _recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / name).read_text())
    assert data["source"].startswith("https://developers.hubspot.com/")
    return data


def _contact_ids(client: httpx.Client, n: int) -> list[str]:
    page = client.get("/crm/v3/objects/contacts", params={"limit": n}).json()
    return [r["id"] for r in page["results"]]


def test_documented_create_replays(client: httpx.Client) -> None:
    request = _recording("meeting_create_with_associations.json")["request"]
    body = json.loads(json.dumps(request["body"]))
    del body["properties"]["hubspot_owner_id"]  # the owner of HubSpot's example portal
    for link, contact in zip(body["associations"], _contact_ids(client, 2), strict=True):
        link["to"]["id"] = contact
    answer = client.post(request["path"], json=body)
    assert answer.status_code == 201
    documented = _recording("meeting_create_with_associations.json")["response"]["body"]
    assert set(documented) <= set(answer.json())
    assert answer.json()["properties"]["hs_meeting_title"] == "Intro meeting"
    read = client.get(f"{MEETINGS}/{answer.json()['id']}", params={"associations": "contacts"})
    assert len(read.json()["associations"]["contacts"]["results"]) == 2


def test_documented_multi_status_replays(client: httpx.Client) -> None:
    request = _recording("batch_create_multi_status.json")["request"]
    answer = client.post("/crm/v3/objects/tickets/batch/create", json=request["body"])
    assert answer.status_code == 207
    documented = _recording("batch_create_multi_status.json")["response"]["body"]
    body = answer.json()
    assert set(documented) <= set(body)
    assert body["numErrors"] == 1
    assert body["errors"][0]["context"]["objectWriteTraceId"] == ["549b1c2a9351"]
    assert body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert "PROPERTY_DOESNT_EXIST" in body["errors"][0]["message"]


def test_headers_and_auth(client: httpx.Client, box: Sandbox) -> None:
    answer = client.get(MEETINGS, params={"limit": 1})
    assert answer.headers["X-HubSpot-RateLimit-Max"] == "110"
    assert answer.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    bad = client.get(MEETINGS, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json()["category"] == "INVALID_AUTHENTICATION"
    box.expire_tokens("hubspot")
    expired = client.get(MEETINGS)
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
    token = client.post(
        "/oauth/v1/token",
        data={"grant_type": "refresh_token", "refresh_token": box.refresh_token("hubspot")},
    )
    assert token.status_code == 200
    assert token.json()["token_type"] == "bearer"
    fresh = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get(MEETINGS, headers=fresh).status_code == 200
    refused = client.post(
        "/oauth/v1/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert (refused.status_code, refused.json()["status"]) == (400, "BAD_REFRESH_TOKEN")


def test_batch_limit_and_404(client: httpx.Client) -> None:
    inputs = [{"id": str(i)} for i in range(101)]
    answer = client.post(f"{MEETINGS}/batch/read", json={"inputs": inputs, "properties": []})
    assert answer.status_code == 400
    assert answer.json()["category"] == "VALIDATION_ERROR"
    partial = client.post(f"{MEETINGS}/batch/read", json={"inputs": [{"id": "1"}]})
    assert partial.status_code == 207
    assert partial.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    missing = client.get(f"{MEETINGS}/1")
    assert (missing.status_code, missing.json()["category"]) == (404, "OBJECT_NOT_FOUND")


def test_validation_names_the_property(client: httpx.Client) -> None:
    answer = client.post(MEETINGS, json={"properties": {"hs_timestamp": "yesterday"}})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["context"]["propertyName"] == ["hs_timestamp"]


def test_search_paging_sorts_and_cap(client: httpx.Client) -> None:
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": "hs_object_id", "operator": "HAS_PROPERTY"}]}
        ],
        "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
        "limit": 20,
    }
    first = client.post(f"{MEETINGS}/search", json=body).json()
    assert first["total"] == 30
    assert first["paging"]["next"]["after"] == "20"
    second = client.post(f"{MEETINGS}/search", json={**body, "after": "20"}).json()
    ids = [int(r["id"]) for r in first["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True)
    assert "paging" not in second
    assert client.post(f"{MEETINGS}/search", json={**body, "limit": 201}).status_code == 400
    assert client.post(f"{MEETINGS}/search", json={**body, "after": "10000"}).status_code == 400


def test_upsert_and_archived_listing(client: httpx.Client) -> None:
    item = {
        "idProperty": "crm_meetings_uid",
        "id": "u-1@x",
        "properties": {"hs_timestamp": "1767225600000", "hs_meeting_title": "T"},
    }
    first = client.post(f"{MEETINGS}/batch/upsert", json={"inputs": [item]}).json()["results"][0]
    again = client.post(f"{MEETINGS}/batch/upsert", json={"inputs": [item]}).json()["results"][0]
    assert (first["new"], again["new"], first["id"]) == (True, False, again["id"])
    assert client.delete(f"{MEETINGS}/{first['id']}").status_code == 204
    archived = client.get(MEETINGS, params={"archived": "true"}).json()["results"]
    assert [r["id"] for r in archived] == [first["id"]]
    assert archived[0]["archived"] is True
    assert "archivedAt" in archived[0]


def test_read_by_a_unique_property(client: httpx.Client) -> None:
    """Objects API, "Read": ``{objectId}`` is any unique property's value with
    ``idProperty``; absent or archived: 404 OBJECT_NOT_FOUND; a non-unique property: 400."""
    props = {"hs_timestamp": "1767225600000", "hs_meeting_title": "T", "crm_meetings_uid": "u@x"}
    made = client.post(MEETINGS, json={"properties": props}).json()
    by_uid = {"idProperty": "crm_meetings_uid", "properties": "hs_meeting_title"}
    found = client.get(f"{MEETINGS}/u@x", params=by_uid)
    assert (found.status_code, found.json()["id"]) == (200, made["id"])
    assert found.json()["properties"]["hs_meeting_title"] == "T"
    absent = client.get(f"{MEETINGS}/other@x", params=by_uid)
    assert (absent.status_code, absent.json()["category"]) == (404, "OBJECT_NOT_FOUND")
    assert absent.json()["context"] == {"id": ["other@x"]}
    not_unique = client.get(f"{MEETINGS}/T", params={"idProperty": "hs_meeting_title"})
    assert (not_unique.status_code, not_unique.json()["category"]) == (400, "VALIDATION_ERROR")
    assert client.delete(f"{MEETINGS}/{made['id']}").status_code == 204
    assert client.get(f"{MEETINGS}/u@x", params=by_uid).status_code == 404


def test_rate_limit_fault_in_hubspot_format(client: httpx.Client, box: Sandbox) -> None:
    box.faults.set(
        "hubspot", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=2)
    )
    answer = client.get(MEETINGS)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert answer.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    documented = _recording("rate_limited_ten_secondly.json")["response"]["body"]
    assert set(answer.json()) >= set(documented) - {"requestId"}
    assert answer.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert client.get(MEETINGS).status_code == 200


def test_documented_email_create_replays(client: httpx.Client) -> None:
    recorded = _recording("email_create_with_associations.json")
    body = json.loads(json.dumps(recorded["request"]["body"]))
    del body["properties"]["hubspot_owner_id"]  # the owner of HubSpot's example portal
    deal = client.get("/crm/v3/objects/deals", params={"limit": 1}).json()["results"][0]["id"]
    contact = _contact_ids(client, 1)[0]
    body["associations"][0]["to"]["id"] = deal
    body["associations"][1]["to"]["id"] = contact
    answer = client.post(recorded["request"]["path"], json=body)
    assert answer.status_code == 201
    assert set(recorded["response"]["body"]) <= set(answer.json())
    assert answer.json()["properties"]["hs_email_status"] == "SENT"
    read = client.get(
        f"/crm/v3/objects/emails/{answer.json()['id']}", params={"associations": "contacts,deals"}
    ).json()
    assert [r["id"] for r in read["associations"]["deals"]["results"]] == [deal]
    assert [r["id"] for r in read["associations"]["contacts"]["results"]] == [contact]
    undated = dict(body["properties"])
    del undated["hs_timestamp"]
    refused = client.post("/crm/v3/objects/emails", json={"properties": undated})
    assert refused.status_code == 400
    assert "hs_timestamp" in refused.text
