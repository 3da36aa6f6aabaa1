"""The Salesforce emulator over HTTPS with plain httpx: statuses, bodies, headers, limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_meetings.sandbox.base import FaultKind, FaultPlan, SandboxEnv
from crm_meetings.sandbox.salesforce import SalesforceEmulator
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory

RECORDINGS = Path(__file__).parents[2] / "recordings" / "salesforce"
API = "/services/data/v62.0"


def recording(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return loaded


def shape(value: Any) -> Any:
    """Keys and value types, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k != "url"}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.fixture
def box(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory(["salesforce"], seed=SeedSpec(seed=3, meetings=30, records=4))


@pytest.fixture
def client(box: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {box.token('salesforce')}"}
    with httpx.Client(
        base_url=box.url("salesforce"), verify=box.ssl_context(), headers=headers, timeout=10
    ) as opened:
        yield opened


def emulator(box: Sandbox) -> SalesforceEmulator:
    found = box.emulator("salesforce")
    assert isinstance(found, SalesforceEmulator)
    return found


def event(subject: str = "Demo", **fields: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "Event"},
        "Subject": subject,
        "StartDateTime": "2026-12-01T15:00:00.000+0000",
        "EndDateTime": "2026-12-01T15:30:00.000+0000",
        **fields,
    }


def test_query_shape_matches_the_documented_response(client: httpx.Client) -> None:
    documented = recording("query")
    response = client.get(f"{API}/query/", params=documented["request"]["query"])
    assert response.status_code == 200
    body = response.json()
    assert body["done"] is True
    assert body["totalSize"] == 4
    assert shape(body["records"][0]) == {
        "attributes": {"type": "str"},
        "Name": "str",
        "Id": "str",
    }
    assert set(body) == set(documented["response"]["body"])
    assert body["records"][0]["attributes"]["url"].startswith(f"{API}/sobjects/Account/001")


def test_query_pages_with_next_records_url_and_batch_size(
    box: Sandbox, client: httpx.Client
) -> None:
    ids: list[str] = []
    response = client.get(
        f"{API}/query",
        params={"q": "SELECT Id FROM Event ORDER BY Id"},
        headers={"Sforce-Query-Options": "batchSize=10"},  # below the minimum: 200
    )
    body = response.json()
    assert body["done"] is True
    assert body["totalSize"] == 30
    emulator(box).rows["Event"].update(
        {
            f"00U{n:015d}": {
                **next(iter(emulator(box).rows["Event"].values())),
                "Id": f"00U{n:015d}",
            }
            for n in range(300)
        }
    )
    body = client.get(
        f"{API}/query",
        params={"q": "SELECT Id FROM Event ORDER BY Id"},
        headers={"Sforce-Query-Options": "batchSize=200"},
    ).json()
    while True:
        ids += [r["Id"] for r in body["records"]]
        if body["done"]:
            break
        assert body["nextRecordsUrl"].startswith(f"{API}/query/01g")
        body = client.get(body["nextRecordsUrl"]).json()
    assert len(ids) == len(set(ids)) == 330
    assert box.calls.count("salesforce", endpoint="*/query/{locator}") == 1


def test_a_query_locator_lives_two_days_and_a_one_page_result_opens_none(
    sandbox_factory: SandboxFactory,
) -> None:
    """Since API v56.0 a cursor is kept 2 days with no limit on how many are open (the
    "API Query Cursor Limits" page); after that its nextRecordsUrl is refused."""
    now = [datetime(2026, 11, 2, 9, 0, tzinfo=UTC)]
    env = SandboxEnv(clock=lambda: now[0])
    box = sandbox_factory(["salesforce"], seed=SeedSpec(seed=3, meetings=30, records=4), env=env)
    events = emulator(box).rows["Event"]
    template = next(iter(events.values()))
    events.update({f"00U{n:015d}": {**template, "Id": f"00U{n:015d}"} for n in range(300)})
    headers = {"Authorization": f"Bearer {box.token('salesforce')}"}
    with httpx.Client(
        base_url=box.url("salesforce"), verify=box.ssl_context(), headers=headers, timeout=10
    ) as client:
        one_page = client.get(f"{API}/query", params={"q": "SELECT Id FROM Account"}).json()
        assert one_page["done"] is True
        assert "nextRecordsUrl" not in one_page
        paged = client.get(
            f"{API}/query",
            params={"q": "SELECT Id FROM Event ORDER BY Id"},
            headers={"Sforce-Query-Options": "batchSize=200"},
        ).json()
        more = paged["nextRecordsUrl"]
        now[0] += timedelta(days=2, seconds=-1)
        client.headers["Authorization"] = f"Bearer {box.token('salesforce')}"  # a fresh session
        assert client.get(more).status_code == 200
        now[0] += timedelta(seconds=1)
        expired = client.get(more)
        assert expired.status_code == 400
        assert expired.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_unsupported_soql_is_malformed_and_unknown_fields_are_named(client: httpx.Client) -> None:
    bad = client.get(f"{API}/query", params={"q": "SELECT COUNT() FROM Event GROUP BY Subject"})
    assert bad.status_code == 400
    assert bad.json()[0]["errorCode"] == "MALFORMED_QUERY"
    unknown = client.get(f"{API}/query", params={"q": "SELECT Nope__c FROM Event"})
    assert unknown.json() == [
        {"message": "No such column 'Nope__c' on entity 'Event'.", "errorCode": "INVALID_FIELD"}
    ]


def test_every_api_response_carries_limit_info_and_401_is_salesforce_s(
    box: Sandbox, client: httpx.Client
) -> None:
    first = client.get(f"{API}/limits/")
    second = client.get(f"{API}/limits/")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    assert second.headers["Sforce-Limit-Info"] == "api-usage=2/15000"
    assert second.json()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14998}
    documented = recording("error_invalid_session")["response"]
    expired = client.get(f"{API}/limits/", headers={"Authorization": "Bearer expired"})
    assert (expired.status_code, expired.json()) == (documented["status"], documented["body"])
    old = client.get("/services/data/v49.0/limits")
    assert old.status_code == 404
    assert old.json()[0]["errorCode"] == "NOT_FOUND"


def test_collections_create_per_record_results_and_the_200_limit(
    box: Sandbox, client: httpx.Client
) -> None:
    documented = recording("collections_create")
    created = client.post(f"{API}/composite/sobjects", json=documented["request"]["body"])
    assert created.status_code == 200
    assert shape(created.json()) == shape(documented["response"]["body"])
    assert [r["id"][:3] for r in created.json()] == ["001", "003"]
    too_many = client.post(
        f"{API}/composite/sobjects",
        json={"allOrNone": False, "records": [event(f"E{n}") for n in range(201)]},
    )
    assert too_many.status_code == 400
    assert too_many.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_all_or_none_rolls_back_and_validation_names_the_field(
    box: Sandbox, client: httpx.Client
) -> None:
    documented = recording("collections_create_all_or_none")
    before = len(emulator(box).rows["Event"])
    body = {"allOrNone": True, "records": [event("ok"), event("x" * 256)]}
    results = client.post(f"{API}/composite/sobjects", json=body).json()
    assert shape(results) == shape(documented["response"]["body"])
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert results[1]["errors"][0]["fields"] == ["Subject"]
    assert len(emulator(box).rows["Event"]) == before
    backwards = client.post(
        f"{API}/sobjects/Event/", json=event(EndDateTime="2026-12-01T14:00:00Z")
    )
    assert backwards.status_code == 400
    assert backwards.json()[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert backwards.json()[0]["fields"] == ["EndDateTime"]


def test_upsert_by_external_id_creates_then_updates(client: httpx.Client) -> None:
    path = f"{API}/composite/sobjects/Event/Meeting_Id__c"
    body = {"allOrNone": False, "records": [event(Meeting_Id__c="m-1")]}
    first = client.patch(path, json=body).json()
    second = client.patch(path, json=body).json()
    assert shape(first) == shape(recording("collections_upsert")["response"]["body"])
    assert [first[0]["created"], second[0]["created"]] == [True, False]
    assert first[0]["id"] == second[0]["id"]
    wrong = client.patch(f"{API}/composite/sobjects/Event/Subject", json=body)
    assert wrong.status_code == 400
    assert wrong.json()[0]["errorCode"] == "INVALID_FIELD"


def test_updated_and_deleted_windows(box: Sandbox, client: httpx.Client) -> None:
    created = client.post(f"{API}/sobjects/Event", json=event()).json()["id"]
    assert client.delete(f"{API}/composite/sobjects", params={"ids": created}).json() == [
        {"id": created, "success": True, "errors": []}
    ]
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(minutes=5)).isoformat(),
        "end": (now + timedelta(minutes=2)).isoformat(),
    }
    updated = client.get(f"{API}/sobjects/Event/updated/", params=window).json()
    deleted = client.get(f"{API}/sobjects/Event/deleted/", params=window).json()
    assert set(shape(updated)) == set(recording("get_updated")["response"]["body"])
    assert shape(deleted) == shape(recording("get_deleted")["response"]["body"])
    assert created not in updated["ids"]
    assert [d["id"] for d in deleted["deletedRecords"]] == [created]
    too_old = {**window, "start": (now - timedelta(days=16)).isoformat()}
    refused = client.get(f"{API}/sobjects/Event/deleted/", params=too_old)
    assert refused.status_code == 400
    assert refused.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    gone = client.get(f"{API}/sobjects/Event/{created}")
    assert gone.status_code == 404


def test_oauth_refresh_issues_a_working_token(box: Sandbox, client: httpx.Client) -> None:
    documented = recording("oauth_refresh")
    form = {**documented["request"]["form"], "refresh_token": box.refresh_token("salesforce")}
    response = client.post("/services/oauth2/token", data=form, headers={"Authorization": ""})
    assert response.status_code == 200
    assert set(response.json()) == set(documented["response"]["body"])
    token = response.json()["access_token"]
    assert client.get(f"{API}/limits", headers={"Authorization": f"Bearer {token}"}).is_success
    refused = client.post("/services/oauth2/token", data={**form, "refresh_token": "nope"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_faults_use_salesforce_bodies(box: Sandbox, client: httpx.Client) -> None:
    box.faults.set("salesforce", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED))
    limited = client.get(f"{API}/limits")
    assert limited.status_code == 403
    assert limited.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert "Sforce-Limit-Info" in limited.headers
    box.faults.set("salesforce", FaultPlan(fail_next=1, fail_kind=FaultKind.SERVER_ERROR))
    assert client.get(f"{API}/limits").status_code == 503


def test_describe_lists_the_history_objects_fields(client: httpx.Client) -> None:
    described = client.get(f"{API}/sobjects/CRM_Meeting_Session__c/describe").json()
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["Provider_Session_Id__c"]["externalId"] is True
    event_types = client.get(f"{API}/sobjects/Event/describe").json()["recordTypeInfos"]
    assert [t["name"] for t in event_types] == ["Customer Meeting", "Internal Meeting", "Master"]
    assert client.get(f"{API}/sobjects/Nope__c/describe").status_code == 404


def test_documented_email_message_logs_once_with_its_relation(
    box: Sandbox, client: httpx.Client
) -> None:
    documented = recording("email_message_create")
    account = emulator(box).seed_ids["record-0"]
    body = json.loads(json.dumps(documented["request"]["body"]).replace("{account}", account))
    created = client.post(f"{API}/composite/sobjects", json=body)
    assert shape(created.json()) == shape(documented["response"]["body"])
    email_id = created.json()[0]["id"]
    assert email_id.startswith("02s")
    contact = client.post(f"{API}/sobjects/Contact", json={"LastName": "Zed"}).json()["id"]
    relation = {**documented["relation"]["request"], "EmailMessageId": email_id}
    relation["RelationId"] = contact
    linked = client.post(f"{API}/composite/sobjects", json={"records": [relation, relation]})
    assert [r["success"] for r in linked.json()] == [True, False]
    assert linked.json()[1]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    again = client.post(f"{API}/composite/sobjects", json=body).json()[0]["errors"][0]
    assert again["statusCode"] == "DUPLICATE_VALUE"
    assert email_id in again["message"]
    body["records"][0] |= {"Status": "9", "Mail_Key__c": "other"}
    bad = client.post(f"{API}/composite/sobjects", json=body).json()[0]["errors"][0]
    assert (bad["statusCode"], bad["fields"]) == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ["Status"],
    )
    assert len(box.state("salesforce")["emails"]) == 1
