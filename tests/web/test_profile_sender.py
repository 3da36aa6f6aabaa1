"""The caller's CRM profile travels from the signed request to the actions: a profile an
organisation address allows sends From that address (seen in the SMTP sink), any other
profile sends from the organizer."""

from __future__ import annotations

import email
import email.policy
import email.utils
from typing import TYPE_CHECKING, Any

import pytest

from crm_meetings.config import Settings
from crm_meetings.store import Store
from crm_meetings.web.services import WebServices

if TYPE_CHECKING:
    from conftest import Clock, OrgAddress, Stack, Web  # tests/web/conftest.py

SALES = "sales@acme.example"
ALLOWED, OTHER = "00e5g000000SALES", "00e5g000000OTHER"  # Salesforce profile ids
INVITEE = "zed@client.example"


@pytest.fixture
def services(store: Store, clock: Clock, stack: Stack) -> WebServices:
    return stack.services(store, clock)


def schedule_from_the_panel(web: Web, stack: Stack, profile: str, key: str) -> None:
    token = web.login(email=stack.organizer, record=stack.account, profile=profile)
    response = web.client.post(
        "/api/v1/meetings",
        json={
            "subject": "Pricing call",
            "start": {"local": "2026-03-10T10:00", "timezone": "Europe/Paris"},
            "end": {"local": "2026-03-10T11:00", "timezone": "Europe/Paris"},
            "invitees": [{"email": INVITEE, "name": "Zed"}],
            "related": [{"object_type": "Account", "record_id": stack.account.record_id}],
        },
        headers={**web.csrf(token), "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    web.client.cookies.clear()


def invitation_senders(stack: Stack) -> list[tuple[str, str]]:
    """(display name, address) of the From of each message the invitee received, in order."""
    found = []
    for recipient, raw in stack.mail.received:
        if recipient == INVITEE:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            found.append(email.utils.parseaddr(str(message["From"])))
    return found


def test_an_allowed_profile_sends_from_the_org_address_and_another_from_the_organizer(
    web: Web, stack: Stack, clock: Clock, org_address: OrgAddress
) -> None:
    org_address(web.store, web.ORG, [ALLOWED])
    schedule_from_the_panel(web, stack, ALLOWED, "k-allowed")
    schedule_from_the_panel(web, stack, OTHER, "k-other")
    stack.deliver(web.store, clock())
    (allowed, other) = invitation_senders(stack)
    assert allowed == ("Acme Sales", SALES)
    assert other[1] == stack.organizer


def _with_hubspot_profiles(settings: Settings, profiles: dict[str, str]) -> Settings:
    web = settings.web.model_copy(update={"hubspot_profiles": profiles})
    return settings.model_copy(update={"web": web})


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """HubSpot users' profiles by e-mail (its signed call names no role)."""
    return _with_hubspot_profiles(settings, {"Olivia@Acme.example": "sales"})


@pytest.mark.parametrize("entry", ["canvas", "hubspot", "zoho"])
def test_each_crm_names_the_profile_and_the_session_keeps_it(web: Web, entry: str) -> None:
    def me(url: str = "/api/v1/me", **headers: str) -> Any:
        response = web.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["profile"]

    if entry == "canvas":
        web.login(profile=ALLOWED)
        assert me() == ALLOWED
    elif entry == "hubspot":
        uri = "https://testserver/api/v1/me?portalId=62515&userId=7&userEmail=olivia%40acme.example"
        assert me(uri, **web.crm.hubspot("GET", uri)) == "sales"
        panel = uri.replace("/api/v1/me", "/hubspot/panel")
        web.client.get(panel, headers=web.crm.hubspot("GET", panel), follow_redirects=False)
        assert me() == "sales"
    else:
        assert me(**{"X-Zoho-Widget-Token": web.crm.zoho(profile="Sales Rep")}) == "Sales Rep"
        web.client.get(f"/zoho/panel?token={web.crm.zoho(profile='Sales Rep')}")
        assert me() == "Sales Rep"
