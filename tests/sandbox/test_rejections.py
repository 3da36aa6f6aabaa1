"""Field validation rules (``Sandbox.reject`` / ``POST /__sandbox__/rejections``) over plain
httpx: in a batch, the refused record fails with its vendor's validation error naming the
field, and the other records are saved; a rule can be scoped to an endpoint or a count."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from crm_meetings.errors import ValidationError
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory

SF_API = "/services/data/v62.0"
START, END = "2026-12-01T15:00:00Z", "2026-12-01T15:30:00Z"


@dataclass(frozen=True)
class Outcome:
    """One record's answer: saved, or the vendor's error code and the field it names."""

    saved: bool
    code: str | None = None
    field: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Crm:
    vendor: str
    title_field: str  # the meeting title, as the vendor names it
    auth: Callable[[str], str]
    batch: Callable[[httpx.Client, list[str]], tuple[int, list[Outcome]]]
    single: Callable[[httpx.Client, str], tuple[int, Outcome]]
    titles: Callable[[Sandbox], list[str]]  # the meeting titles the CRM now holds


# --- Salesforce: sObject Collections, per-record {success, errors: [{statusCode, fields}]} --


def _sf_event(subject: str) -> dict[str, Any]:
    return {
        "attributes": {"type": "Event"},
        "Subject": subject,
        "StartDateTime": START,
        "EndDateTime": END,
    }


def _sf_outcome(result: dict[str, Any]) -> Outcome:
    if result["success"]:
        return Outcome(True)
    error = result["errors"][0]
    return Outcome(False, error["statusCode"], error["fields"][0], error["message"])


def _sf_batch(client: httpx.Client, titles: list[str]) -> tuple[int, list[Outcome]]:
    body = {"allOrNone": False, "records": [_sf_event(t) for t in titles]}
    answer = client.post(f"{SF_API}/composite/sobjects", json=body)
    return answer.status_code, [_sf_outcome(r) for r in answer.json()]


def _sf_single(client: httpx.Client, title: str) -> tuple[int, Outcome]:
    answer = client.post(f"{SF_API}/sobjects/Event/", json=_sf_event(title))
    if answer.status_code == 201:
        return 201, Outcome(True)
    error = answer.json()[0]  # a JSON list of {message, errorCode, fields}
    return answer.status_code, Outcome(False, error["errorCode"], error["fields"][0])


# --- HubSpot: batch create with objectWriteTraceId, 207 with results and errors ---------------


def _hs_input(title: str, trace: int) -> dict[str, Any]:
    return {
        "objectWriteTraceId": f"t{trace}",
        "properties": {"hs_meeting_title": title, "hs_timestamp": START},
    }


def _hs_batch(client: httpx.Client, titles: list[str]) -> tuple[int, list[Outcome]]:
    inputs = [_hs_input(t, n) for n, t in enumerate(titles)]
    answer = client.post("/crm/v3/objects/meetings/batch/create", json={"inputs": inputs})
    body = answer.json()
    saved = {r["objectWriteTraceId"] for r in body["results"]}
    errors = {e["context"]["objectWriteTraceId"][0]: e for e in body.get("errors", [])}
    outcomes = []
    for n in range(len(titles)):
        error = errors.get(f"t{n}")
        if error is None:
            assert f"t{n}" in saved
            outcomes.append(Outcome(True))
        else:
            field = error["errors"][0]["context"]["propertyName"][0]
            outcomes.append(Outcome(False, error["category"], field, error["message"]))
    return answer.status_code, outcomes


def _hs_single(client: httpx.Client, title: str) -> tuple[int, Outcome]:
    answer = client.post("/crm/v3/objects/meetings", json=_hs_input(title, 0))
    if answer.status_code == 201:
        return 201, Outcome(True)
    body = answer.json()
    field = body["errors"][0]["context"]["propertyName"][0]
    return answer.status_code, Outcome(False, body["category"], field)


# --- Zoho: insert records, per-record {code, details: {api_name}, status} ---------------------


def _zoho_event(title: str) -> dict[str, Any]:
    return {
        "Event_Title": title,
        "Start_DateTime": "2026-12-01T16:00:00+01:00",
        "End_DateTime": "2026-12-01T16:30:00+01:00",
    }


def _zoho_outcome(row: dict[str, Any]) -> Outcome:
    if row["status"] == "success":
        return Outcome(True)
    return Outcome(False, row["code"], row["details"]["api_name"], row["message"])


def _zoho_batch(client: httpx.Client, titles: list[str]) -> tuple[int, list[Outcome]]:
    answer = client.post("/crm/v8/Events", json={"data": [_zoho_event(t) for t in titles]})
    return answer.status_code, [_zoho_outcome(r) for r in answer.json()["data"]]


def _zoho_single(client: httpx.Client, title: str) -> tuple[int, Outcome]:
    answer = client.post("/crm/v8/Events", json={"data": [_zoho_event(title)]})
    return answer.status_code, _zoho_outcome(answer.json()["data"][0])


CRMS = {
    "salesforce": Crm(
        "salesforce",
        "Subject",
        lambda token: f"Bearer {token}",
        _sf_batch,
        _sf_single,
        lambda box: [e["Subject"] for e in box.state("salesforce")["events"]],
    ),
    "hubspot": Crm(
        "hubspot",
        "hs_meeting_title",
        lambda token: f"Bearer {token}",
        _hs_batch,
        _hs_single,
        lambda box: [m["properties"]["hs_meeting_title"] for m in box.state("hubspot")["meetings"]],
    ),
    "zoho": Crm(
        "zoho",
        "Event_Title",
        lambda token: f"Zoho-oauthtoken {token}",
        _zoho_batch,
        _zoho_single,
        lambda box: [e["Event_Title"] for e in box.state("zoho")["events"]],
    ),
}
VALIDATION = {
    "salesforce": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    "hubspot": "VALIDATION_ERROR",
    "zoho": "INVALID_DATA",
}
MULTI_STATUS = {"salesforce": 200, "hubspot": 207, "zoho": 207}


@pytest.fixture(params=sorted(CRMS))
def crm(request: pytest.FixtureRequest) -> Crm:
    return CRMS[str(request.param)]


@pytest.fixture
def box(sandbox_factory: SandboxFactory, crm: Crm) -> Sandbox:
    return sandbox_factory([crm.vendor], seed=SeedSpec(seed=8, meetings=3, records=2))


@pytest.fixture
def client(box: Sandbox, crm: Crm) -> Iterator[httpx.Client]:
    headers = {"Authorization": crm.auth(box.token(crm.vendor))}
    with httpx.Client(
        base_url=box.url(crm.vendor), verify=box.ssl_context(), headers=headers, timeout=10
    ) as opened:
        yield opened


def test_one_record_of_a_batch_is_refused_and_the_others_saved(
    box: Sandbox, client: httpx.Client, crm: Crm
) -> None:
    box.reject(crm.vendor, field=crm.title_field, value="Board review")
    status, outcomes = crm.batch(client, ["Kick-off", "Board review", "Retro"])
    assert status == MULTI_STATUS[crm.vendor]
    assert [o.saved for o in outcomes] == [True, False, True]
    refused = outcomes[1]
    assert (refused.code, refused.field) == (VALIDATION[crm.vendor], crm.title_field)
    titles = crm.titles(box)
    assert {"Kick-off", "Retro"} <= set(titles)
    assert "Board review" not in titles
    single_status, single = crm.single(client, "Board review")
    assert single_status == 400
    assert (single.code, single.field) == (VALIDATION[crm.vendor], crm.title_field)


def test_a_rule_set_through_the_admin_endpoint(
    box: Sandbox, client: httpx.Client, crm: Crm
) -> None:
    rule = {"field": crm.title_field, "pattern": "^Secret", "message": "No secrets here"}
    added = client.post("/__sandbox__/rejections", json=rule)
    assert added.status_code == 201
    assert added.json()["vendor"] == crm.vendor
    assert added.json()["pattern"] == "^Secret"
    listed = client.get("/__sandbox__/rejections").json()["rejections"]
    assert [r["field"] for r in listed] == [crm.title_field]
    status, outcomes = crm.batch(client, ["Secret plan", "Open plan", "Secretive"])
    assert status == MULTI_STATUS[crm.vendor]
    assert [o.saved for o in outcomes] == [False, True, False]
    assert {o.field for o in outcomes if not o.saved} == {crm.title_field}
    assert all("No secrets here" in (o.message or "") for o in outcomes if not o.saved)
    assert client.delete("/__sandbox__/rejections").status_code == 204
    assert client.get("/__sandbox__/rejections").json()["rejections"] == []
    assert crm.single(client, "Secret plan")[1].saved


def test_a_rule_scoped_to_an_endpoint_or_a_count(
    box: Sandbox, client: httpx.Client, crm: Crm
) -> None:
    batch_only = {"salesforce": "*/composite/sobjects", "hubspot": "*/batch/create"}
    if crm.vendor in batch_only:  # Zoho inserts one record or a batch at the same endpoint
        box.reject(
            crm.vendor, field=crm.title_field, value="Scoped", endpoint=batch_only[crm.vendor]
        )
        assert crm.single(client, "Scoped")[1].saved
        assert [o.saved for o in crm.batch(client, ["Scoped", "Fine"])[1]] == [False, True]
        box.clear_rejections(crm.vendor)
    box.reject(crm.vendor, field=crm.title_field, value="Once", times=1)
    assert [o.saved for o in crm.batch(client, ["Once", "Once"])[1]] == [False, True]
    assert crm.single(client, "Once")[1].saved
    assert box.calls.count(crm.vendor) >= 2


def test_bad_rules_are_refused(box: Sandbox, client: httpx.Client, crm: Crm) -> None:
    for body in (
        {"value": "x"},  # no field
        {"field": crm.title_field},  # neither value nor pattern
        {"field": crm.title_field, "value": "x", "pattern": "x"},
        {"field": crm.title_field, "pattern": "("},  # not a regular expression
        {"field": crm.title_field, "value": "x", "times": 0},
        {"field": crm.title_field, "value": "x", "colour": "red"},
    ):
        assert client.post("/__sandbox__/rejections", json=body).status_code == 422, body
    assert client.get("/__sandbox__/rejections").json()["rejections"] == []
    with pytest.raises(ValidationError, match="value and pattern"):
        box.reject(crm.vendor, field=crm.title_field)
