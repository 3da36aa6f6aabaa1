"""The Zoho emulator through plain httpx: status, body shape, headers, paging, limits, errors."""

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

RECORDINGS = Path(__file__).parents[2] / "recordings" / "zoho"


@pytest.fixture
def zoho() -> Iterator[tuple[Sandbox, httpx.Client]]:
    with Sandbox(["zoho"], seed=SeedSpec(seed=5, meetings=7, records=3)) as box:
        headers = {"Authorization": f"Zoho-oauthtoken {box.token('zoho')}"}
        with httpx.Client(base_url=box.url("zoho"), verify=box.ssl_context(), headers=headers) as c:
            yield box, c


def event(title: str = "Demo", **extra: Any) -> dict[str, Any]:
    return {
        "Event_Title": title,
        "Start_DateTime": "2026-12-01T10:00:00+01:00",
        "End_DateTime": "2026-12-01T11:00:00+01:00",
        **extra,
    }


def shape(value: Any) -> Any:
    """Keys all the way down (lists by their first item): what 'matches in shape' means."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_auth_errors_are_zohos(zoho: tuple[Sandbox, httpx.Client]) -> None:
    box, client = zoho
    missing = httpx.get(box.url("zoho") + "/crm/v8/org", verify=box.ssl_context())
    assert (missing.status_code, missing.json()["code"]) == (401, "AUTHENTICATION_FAILURE")
    box.expire_tokens("zoho")
    expired = client.get("/crm/v8/org")
    assert expired.status_code == 401
    assert expired.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


def test_token_endpoint(zoho: tuple[Sandbox, httpx.Client]) -> None:
    box, client = zoho
    form = {"grant_type": "refresh_token", "client_id": "c", "client_secret": "s"}
    good = client.post("/oauth/v2/token", data={**form, "refresh_token": box.refresh_token("zoho")})
    documented = json.loads((RECORDINGS / "token_refresh.json").read_text())["response"]["body"]
    assert set(good.json()) == set(documented)
    assert good.json()["api_domain"] == box.url("zoho")
    bad = client.post("/oauth/v2/token", data={**form, "refresh_token": "nope"})
    assert (bad.status_code, bad.json()) == (200, {"error": "invalid_code"})


def test_get_records_paging(zoho: tuple[Sandbox, httpx.Client]) -> None:
    _, client = zoho
    assert client.get("/crm/v8/Events").json()["code"] == "REQUIRED_PARAM_MISSING"
    first = client.get("/crm/v8/Events", params={"fields": "Event_Title", "per_page": 3})
    info = first.json()["info"]
    documented = json.loads((RECORDINGS / "get_records_200.json").read_text())["response"]["body"]
    assert set(info) == set(documented["info"])
    assert info["more_records"]
    assert first.headers["X-RATELIMIT-LIMIT"]
    seen = [r["id"] for r in first.json()["data"]]
    token = info["next_page_token"]
    while token:
        page = client.get(
            "/crm/v8/Events", params={"fields": "Event_Title", "per_page": 3, "page_token": token}
        )
        seen += [r["id"] for r in page.json()["data"]]
        token = page.json()["info"]["next_page_token"]
    assert len(seen) == len(set(seen)) == 7
    assert set(first.json()["data"][0]) == {"id", "Event_Title"}
    too_far = client.get("/crm/v8/Events", params={"fields": "Event_Title", "page": 11})
    assert too_far.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    assert client.get("/crm/v8/Leads", params={"fields": "Last_Name"}).status_code == 204


def test_if_modified_since(zoho: tuple[Sandbox, httpx.Client]) -> None:
    _, client = zoho
    params = {"fields": "Event_Title"}
    future = {"If-Modified-Since": "2099-01-01T00:00:00+00:00"}
    assert client.get("/crm/v8/Events", params=params, headers=future).status_code == 304
    past = {"If-Modified-Since": "2000-01-01T00:00:00+00:00"}
    assert len(client.get("/crm/v8/Events", params=params, headers=past).json()["data"]) == 7


def test_writes_report_per_record_and_respect_the_limit(zoho: tuple[Sandbox, httpx.Client]) -> None:
    _, client = zoho
    mixed = client.post("/crm/v8/Events", json={"data": [event(), {"Event_Title": "no times"}]})
    assert mixed.status_code == 207
    documented = json.loads((RECORDINGS / "insert_207.json").read_text())["response"]["body"]
    ok, failed = mixed.json()["data"]
    assert shape(ok) == {
        **shape(documented["data"][0]),
        "details": {
            k: v
            for k, v in shape(documented["data"][0]["details"]).items()
            if k != "$approval_state"
        },
    }
    assert failed["details"] == {
        "api_name": "Start_DateTime",
        "json_path": "$.data[1].Start_DateTime",
    }
    too_many = client.post("/crm/v8/Events", json={"data": [event()] * 101})
    assert (too_many.status_code, too_many.json()["code"]) == (400, "LIMIT_EXCEEDED")
    bad_type = client.put(
        f"/crm/v8/Events/{ok['details']['id']}", json={"data": [{"Start_DateTime": "tomorrow"}]}
    )
    assert bad_type.json()["data"][0]["details"]["expected_data_type"] == "datetime"


def test_delete_and_deleted(zoho: tuple[Sandbox, httpx.Client]) -> None:
    _, client = zoho
    created = client.post("/crm/v8/Events", json={"data": [event()]}).json()["data"][0]["details"][
        "id"
    ]
    gone = client.delete("/crm/v8/Events", params={"ids": f"{created},1"})
    assert gone.status_code == 207
    assert [e["code"] for e in gone.json()["data"]] == ["SUCCESS", "INVALID_DATA"]
    deleted = client.get("/crm/v8/Events/deleted", params={"type": "all"}).json()
    documented = json.loads((RECORDINGS / "deleted_200.json").read_text())["response"]["body"]
    assert shape(deleted["data"][0]) == shape(documented["data"][0])
    assert client.get(f"/crm/v8/Events/{created}").status_code == 204


def test_upsert_with_duplicate_check_fields(zoho: tuple[Sandbox, httpx.Client]) -> None:
    _, client = zoho
    row = {
        "Name": "zoom s1",
        "Provider_Session_Id": "s1",
        "Session_Participants": [{"Attendee_Name": "A"}],
    }
    body = {"data": [row], "duplicate_check_fields": ["Provider_Session_Id"]}
    first = client.post("/crm/v8/CRM_Meeting_Sessions/upsert", json=body).json()["data"][0]
    second = client.post("/crm/v8/CRM_Meeting_Sessions/upsert", json=body).json()["data"][0]
    assert (first["action"], second["action"]) == ("insert", "update")
    assert first["details"]["id"] == second["details"]["id"]
    events = client.post("/crm/v8/Events/upsert", json={"data": [event()]})
    assert events.status_code == 400


def test_unique_field_follows_update_delete_and_ignores_case(
    zoho: tuple[Sandbox, httpx.Client],
) -> None:
    """The duplicate check reads an index; it must see every write, as a scan would."""
    _, client = zoho

    def create(key: str) -> httpx.Response:
        return client.post("/crm/v8/Events", json={"data": [event(CRM_Meetings_Id=key)]})

    first = create("m-1").json()["data"][0]["details"]["id"]
    taken = create("M-1").json()["data"][0]
    assert (taken["code"], taken["details"]["id"]) == ("DUPLICATE_DATA", first)
    moved = client.put(f"/crm/v8/Events/{first}", json={"data": [{"CRM_Meetings_Id": "m-2"}]})
    assert moved.json()["data"][0]["status"] == "success"
    assert create("m-1").json()["data"][0]["status"] == "success"  # the old value is free
    assert create("m-2").json()["data"][0]["code"] == "DUPLICATE_DATA"
    assert client.delete("/crm/v8/Events", params={"ids": first}).status_code == 200
    assert create("m-2").json()["data"][0]["status"] == "success"  # and so is a deleted one's
    shaped = client.post(
        "/crm/v8/CRM_Meeting_Sessions/upsert",
        json={"data": [{"Name": "s", "Provider_Session_Id": {"not": "text"}}]},
    )
    assert shaped.json()["data"][0]["code"] == "INVALID_DATA"


def test_coql_and_metadata(zoho: tuple[Sandbox, httpx.Client]) -> None:
    box, client = zoho
    account = box.emulator("zoho").records("Accounts")[0]["id"]  # type: ignore[attr-defined]
    query = f"select id, Event_Title from Events where What_Id = '{account}' limit 200 offset 0"  # noqa: S608
    found = client.post("/crm/v8/coql", json={"select_query": query})
    assert found.status_code in (200, 204)
    wrong = client.post("/crm/v8/coql", json={"select_query": "delete from Events"})
    assert wrong.json()["code"] == "SYNTAX_ERROR"
    fields = client.get("/crm/v8/settings/fields", params={"module": "Events"}).json()["fields"]
    assert {"Event_Title", "Participants", "CRM_Meetings_Id"} <= {f["api_name"] for f in fields}
    assert (
        client.get("/crm/v8/settings/fields", params={"module": "Nope"}).json()["code"]
        == "INVALID_MODULE"
    )
    me = client.get("/crm/v8/users", params={"type": "CurrentUser"}).json()["users"]
    assert me[0]["email"] == "admin@sandbox.example.com"


def test_coql_finds_an_event_by_its_uid_and_answers_204_for_none(
    zoho: tuple[Sandbox, httpx.Client],
) -> None:
    _, client = zoho
    made = client.post("/crm/v8/Events", json={"data": [event(CRM_Meetings_UID="u@x")]})
    record_id = made.json()["data"][0]["details"]["id"]

    def query(uid: str) -> httpx.Response:
        select = f"select id from Events where CRM_Meetings_UID = '{uid}' limit 1"  # noqa: S608
        return client.post("/crm/v8/coql", json={"select_query": select})

    found = query("u@x")
    assert (found.status_code, found.json()["data"]) == (200, [{"id": record_id}])
    assert query("other@x").status_code == 204  # no match: 204 No Content, no body
    assert client.delete(f"/crm/v8/Events/{record_id}").status_code == 200
    assert query("u@x").status_code == 204  # in the recycle bin: not queried


def test_injected_faults_speak_zoho(zoho: tuple[Sandbox, httpx.Client]) -> None:
    box, client = zoho
    box.faults.set("zoho", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=2))
    limited = client.get("/crm/v8/org")
    documented = json.loads((RECORDINGS / "rate_limited_429.json").read_text())["response"]["body"]
    assert limited.status_code == 429
    assert limited.json()["code"] == documented["code"]
    assert limited.json()["details"]["retry_after"] == 2
    assert limited.headers["X-RATELIMIT-RESET"] == "2"
    box.faults.set("zoho", FaultPlan(fail_next=1, fail_kind=FaultKind.SERVER_ERROR))
    assert client.get("/crm/v8/org").json()["code"] == "INTERNAL_ERROR"


def test_documented_notes_create_and_read_back(zoho: tuple[Sandbox, httpx.Client]) -> None:
    box, client = zoho
    recorded = json.loads((RECORDINGS / "notes_create_201.json").read_text())
    account = box.emulator("zoho").records("Accounts")[0]["id"]  # type: ignore[attr-defined]
    body = json.loads(json.dumps(recorded["request"]["body"]))
    body["data"][0]["Parent_Id"] = {"module": {"api_name": "Accounts"}, "id": account}
    created = client.post("/crm/v8/Notes", json=body)
    assert created.status_code == 201
    assert shape(created.json()) == shape(recorded["response"]["body"])
    listed = client.get(f"/crm/v8/Accounts/{account}/Notes", params={"fields": "Note_Content"})
    documented = json.loads((RECORDINGS / "notes_get_200.json").read_text())["response"]["body"]
    assert set(documented["info"]) <= set(listed.json()["info"])
    (note,) = listed.json()["data"]
    assert note["Note_Content"] == "Need to do further tracking"
    full = client.get(f"/crm/v8/Accounts/{account}/Notes").json()["data"][0]["Parent_Id"]
    assert shape(full) == shape(documented["data"][0]["Parent_Id"])
    orphan = {"data": [{**body["data"][0], "Parent_Id": {"module": {"api_name": "Accounts"},
                                                         "id": "1"}}]}  # fmt: skip
    refused = client.post("/crm/v8/Notes", json=orphan).json()["data"][0]
    assert (refused["code"], refused["details"]["api_name"]) == ("INVALID_DATA", "Parent_Id")
    other = box.emulator("zoho").records("Accounts")[1]["id"]  # type: ignore[attr-defined]
    assert client.get(f"/crm/v8/Accounts/{other}/Notes").status_code == 204
