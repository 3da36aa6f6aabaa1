"""Each CRM connection serves one org: a signed caller from any other org is refused (403)
on every CRM's entry point and signed API call, with the org it serves named."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient  # imported by conftest first, without warning

from crm_meetings.config import HubSpotSettings, SalesforceSettings, Settings, ZohoSettings
from crm_meetings.model import CrmKind
from crm_meetings.store import Store
from crm_meetings.web.app import create_app
from crm_meetings.web.orgs import org_checks
from crm_meetings.web.services import WebServices

if TYPE_CHECKING:
    from conftest import Clock, Crm, Web  # tests/web/conftest.py

SF_ORG, SF_OTHER = "00Dxx0000001gEREAY", "00Dxx0000009ZZZZZZ"
PORTAL, OTHER_PORTAL = 62515, 99001
ZOHO_ORG, ZOHO_OTHER = "5725767000000000001", "6000000000000000002"
CONNECTED = frozenset(CrmKind)


def bound(settings: Settings) -> Settings:
    """The test settings with each CRM connection bound to its org."""
    return settings.model_copy(
        update={
            "salesforce": SalesforceSettings(org_id=SF_ORG),
            "hubspot": HubSpotSettings(portal_id=PORTAL),
            "zoho": ZohoSettings(org_id=ZOHO_ORG),
        }
    )


def _hubspot_uri(path: str, portal: int) -> str:
    return f"https://testserver{path}?portalId={portal}&userId=77&userEmail=olivia%40acme.example"


Enter = Callable[[TestClient, "Crm", bool], Any]


def canvas(client: TestClient, crm: Crm, ours: bool) -> Any:
    signed = crm.canvas(org=SF_ORG if ours else SF_OTHER)
    return client.post(
        "/salesforce/canvas", data={"signed_request": signed}, follow_redirects=False
    )


def hubspot_panel(client: TestClient, crm: Crm, ours: bool) -> Any:
    uri = _hubspot_uri("/hubspot/panel", PORTAL if ours else OTHER_PORTAL)
    return client.get(uri, headers=crm.hubspot("GET", uri), follow_redirects=False)


def hubspot_api(client: TestClient, crm: Crm, ours: bool) -> Any:
    uri = _hubspot_uri("/api/v1/me", PORTAL if ours else OTHER_PORTAL)
    return client.get(uri, headers=crm.hubspot("GET", uri))


def zoho_panel(client: TestClient, crm: Crm, ours: bool) -> Any:
    token = crm.zoho(org=ZOHO_ORG if ours else ZOHO_OTHER)
    return client.get(f"/zoho/panel?token={token}", follow_redirects=False)


def zoho_api(client: TestClient, crm: Crm, ours: bool) -> Any:
    token = crm.zoho(org=ZOHO_ORG if ours else ZOHO_OTHER)
    return client.get("/api/v1/me", headers={"X-Zoho-Widget-Token": token})


PATHS: dict[str, tuple[Enter, str]] = {
    "salesforce canvas": (canvas, f"Salesforce org {SF_ORG}"),
    "hubspot panel": (hubspot_panel, f"HubSpot portal {PORTAL}"),
    "hubspot api": (hubspot_api, f"HubSpot portal {PORTAL}"),
    "zoho panel": (zoho_panel, f"Zoho org {ZOHO_ORG}"),
    "zoho api": (zoho_api, f"Zoho org {ZOHO_ORG}"),
}


def _app(store: Store, clock: Clock, settings: Settings) -> TestClient:
    services = WebServices(connected=CONNECTED)
    app = create_app(settings, store=store, clock=clock, services=services)
    return TestClient(app, base_url="https://testserver")


@pytest.mark.parametrize("path", list(PATHS))
def test_the_served_org_is_let_in_and_another_org_is_refused(
    path: str, store: Store, clock: Clock, crm: Crm, settings: Settings
) -> None:
    enter, served = PATHS[path]
    with _app(store, clock, bound(settings)) as client:
        assert enter(client, crm, True).status_code in (200, 303)  # /me, or to the panel
        client.cookies.clear()
        refused = enter(client, crm, False)
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["code"] == "permission_denied"
    assert body["message"].startswith(f"This crm-meetings installation serves {served}; ")
    assert "Ask your admin" in body["hint"]
    assert SESSION_SET not in refused.headers.get("set-cookie", "")


SESSION_SET = "cm_session="


@pytest.mark.parametrize("path", list(PATHS))
def test_a_connection_without_its_org_id_refuses_every_org(
    path: str, store: Store, clock: Clock, crm: Crm, settings: Settings
) -> None:
    enter, _ = PATHS[path]
    with _app(store, clock, settings) as client:
        refused = enter(client, crm, True)
    assert refused.status_code == 403, refused.text
    key = {"salesforce": "org_id", "hubspot": "portal_id", "zoho": "org_id"}[path.split()[0]]
    assert f"[{path.split()[0]}] {key}" in refused.json()["hint"]


def test_a_session_of_another_org_is_refused_once_the_org_is_bound(
    web: Web, store: Store, clock: Clock, settings: Settings
) -> None:
    web.login(org=SF_OTHER)  # on a server with no Salesforce connection: store-only
    cookies = dict(web.client.cookies)
    with _app(store, clock, bound(settings)) as client:
        client.cookies.update(cookies)
        refused = client.get("/api/v1/me")
    assert refused.status_code == 403
    assert f"serves Salesforce org {SF_ORG}" in refused.json()["message"]


def test_doctor_names_the_org_each_connection_serves_or_the_key_to_set(
    settings: Settings,
) -> None:
    configured = settings.model_copy(
        update={
            "salesforce": SalesforceSettings(enabled=True, org_id=SF_ORG),
            "hubspot": HubSpotSettings(enabled=True),
            "zoho": ZohoSettings(enabled=False),
        }
    )
    lines = {r.name: r for r in org_checks(configured) or []}
    assert set(lines) == {"web salesforce org", "web hubspot org"}
    assert lines["web salesforce org"].ok
    assert lines["web salesforce org"].detail == f"serves Salesforce org {SF_ORG}"
    assert not lines["web hubspot org"].ok
    assert "[hubspot] portal_id" in lines["web hubspot org"].fix
    no_pages = configured.model_copy(
        update={"web": configured.web.model_copy(update={"hubspot_client_secret": None})}
    )
    assert [r.name for r in org_checks(no_pages) or []] == ["web salesforce org"]
