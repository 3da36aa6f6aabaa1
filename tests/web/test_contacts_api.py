"""/api/v1/contacts and /api/v1/companies: my vs firm-wide, types, saved filters, per org."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from crm_meetings.contacts.map import CompanyFilter, CompanyType, Scope
from crm_meetings.contacts.store import ContactRepository
from crm_meetings.model import Invitee, Person

if TYPE_CHECKING:
    from conftest import Clock, Web

OLIVIA, PAUL = "olivia@acme.example", "paul@acme.example"


@pytest.fixture
def scenario(web: Web, make_meeting: Any, clock: Clock) -> Web:
    """Olivia met Zed and Amy (client.example); Paul met Kim (partner.example); in
    another org, Olivia met Eve (rival.example)."""

    def past(days: int, **kw: Any) -> Any:
        start = clock() - timedelta(days=days)
        return make_meeting(start=start, end=start + timedelta(hours=1), **kw)

    olivias = past(10)
    pauls = past(20, organizer=Person(PAUL, "Paul"), invitees=(Invitee("kim@partner.example"),))
    elsewhere = past(5, invitees=(Invitee("eve@rival.example", "Eve"),))
    with web.store.transaction() as uow:
        uow.meetings.add(olivias, org_id=web.ORG)
        uow.meetings.add(pauls, org_id=web.ORG)
        uow.meetings.add(elsewhere, org_id=web.OTHER_ORG)
        contacts = uow.repository(ContactRepository)
        contacts.set_profile(web.ORG, "client.example", type=CompanyType.CLIENT, partner=OLIVIA)
        contacts.set_profile(web.ORG, "partner.example", type=CompanyType.REFERRAL_SOURCE)
        contacts.save_filter(
            web.ORG, OLIVIA, CompanyFilter("My clients", Scope.FIRM, CompanyType.CLIENT, "me")
        )
    return web


def emails(web: Web, url: str) -> list[str]:
    response = web.client.get(url)
    assert response.status_code == 200, response.text
    return [row["email"] for row in response.json()]


def domains(web: Web, url: str) -> list[str]:
    response = web.client.get(url)
    assert response.status_code == 200, response.text
    return [row["domain"] for row in response.json()]


def test_my_contacts_and_the_firms(scenario: Web) -> None:
    scenario.login()
    mine = emails(scenario, "/api/v1/contacts?scope=mine")
    assert "zed@client.example" in mine
    assert "amy@client.example" in mine
    assert "kim@partner.example" not in mine
    assert emails(scenario, "/api/v1/contacts") == mine  # mine is the default
    firm = emails(scenario, "/api/v1/contacts?scope=firm")
    assert {"zed@client.example", "kim@partner.example"} <= set(firm)
    assert not [e for e in firm if e.endswith("rival.example")]  # another org's meeting
    zed = next(
        c for c in scenario.client.get("/api/v1/contacts?scope=firm").json() if c["name"] == "Zed"
    )
    assert zed["company"] == "client.example"
    assert zed["known_best_by"] == OLIVIA
    assert zed["meetings_90d"] == 1


def test_a_colleague_has_their_own_contacts(scenario: Web) -> None:
    scenario.login(email=PAUL)
    assert emails(scenario, "/api/v1/contacts?scope=mine") == ["kim@partner.example"]


def test_contacts_are_org_scoped(scenario: Web) -> None:
    scenario.login(org=scenario.OTHER_ORG)
    firm = emails(scenario, "/api/v1/contacts?scope=firm")
    assert "eve@rival.example" in firm
    assert "zed@client.example" not in firm
    assert "rival.example" in domains(scenario, "/api/v1/companies")
    assert "client.example" not in domains(scenario, "/api/v1/companies")


def test_companies_by_scope_type_and_saved_filter(scenario: Web) -> None:
    scenario.login()
    firm = domains(scenario, "/api/v1/companies")
    assert {"client.example", "partner.example"} <= set(firm)
    assert "rival.example" not in firm
    mine = domains(scenario, "/api/v1/companies?scope=mine")
    assert "client.example" in mine
    assert "partner.example" not in mine
    assert domains(scenario, "/api/v1/companies?type=client") == ["client.example"]
    assert domains(scenario, "/api/v1/companies?type=referral_source") == ["partner.example"]
    assert domains(scenario, "/api/v1/companies?type=prospect") == []
    saved = scenario.client.get("/api/v1/companies", params={"filter": "My clients"})
    assert [(c["domain"], c["type"], c["partner"]) for c in saved.json()] == [
        ("client.example", "client", OLIVIA)
    ]


def test_a_saved_filter_is_the_users_own(scenario: Web) -> None:
    scenario.login(email=PAUL)
    response = scenario.client.get("/api/v1/companies", params={"filter": "My clients"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/contacts?scope=everyone",
        "/api/v1/companies?type=friend",
        "/api/v1/companies?scope=all",
        "/api/v1/companies?filter=",
    ],
)
def test_bad_queries_are_422(scenario: Web, url: str) -> None:
    scenario.login()
    assert scenario.client.get(url).status_code == 422


def test_the_contact_map_needs_a_caller(scenario: Web) -> None:
    assert scenario.client.get("/api/v1/contacts").status_code == 401
    assert scenario.client.get("/api/v1/companies").status_code == 401
