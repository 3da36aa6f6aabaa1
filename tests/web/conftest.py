"""Web fixtures: settings with test secrets, the app over a migrated store, signed callers.

``crm`` signs what the three CRMs would send (Canvas signed requests, HubSpot v3
headers, Zoho widget tokens) with the test secrets; ``client`` speaks HTTPS to the app
in-process so the Secure session cookie is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import secrets
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI

from crm_meetings.actions import ActionContext
from crm_meetings.config import Settings, WebSettings
from crm_meetings.model import RecordRef
from crm_meetings.store import Store
from crm_meetings.web.app import create_app
from crm_meetings.web.auth import hubspot_v3_signature, sign_widget_token
from crm_meetings.web.security import CSRF_HEADER, Principal
from crm_meetings.web.services import WebServices

# Starlette 1.x warns that its test client prefers httpx2; httpx is what this project
# locks (no new dependencies), and the warning fires only on import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

if TYPE_CHECKING:
    from conftest import Clock

CANVAS_SECRET = "canvas-consumer-secret"
HUBSPOT_SECRET = "hubspot-client-secret"
ZOHO_SECRET = "zoho-widget-secret"
ORG = "00Dxx0000001gEREAY"
OTHER_ORG = "00Dxx0000009ZZZZZZ"
REP = "olivia@acme.example"
ADMIN = "admin@acme.example"
ACCOUNT = RecordRef("Account", "001A")


def web_settings() -> Settings:
    return Settings(
        web=WebSettings(
            session_secret="test-session-secret",  # type: ignore[arg-type]
            salesforce_canvas_secret=CANVAS_SECRET,  # type: ignore[arg-type]
            hubspot_client_secret=HUBSPOT_SECRET,  # type: ignore[arg-type]
            zoho_widget_secret=ZOHO_SECRET,  # type: ignore[arg-type]
        )
    )


@dataclass
class Crm:
    """Signs requests as the CRMs do, at the test clock's time."""

    clock: Clock

    def canvas(
        self,
        *,
        org: str = ORG,
        email: str = REP,
        record: RecordRef | None = ACCOUNT,
        issued: datetime | None = None,
        secret: str = CANVAS_SECRET,
    ) -> str:
        context: dict[str, Any] = {
            "user": {
                "userId": "005" + hashlib.sha256(email.encode()).hexdigest()[:12],
                "email": email,
            },
            "organization": {"organizationId": org},
            "environment": {"record": {}},
        }
        if record is not None:
            context["environment"]["record"] = {
                "Id": record.record_id,
                "attributes": {"type": record.object_type},
            }
        payload = {
            "algorithm": "HMACSHA256",
            "issuedAt": int((issued or self.clock()).timestamp() * 1000),
            "context": context,
            "nonce": secrets.token_hex(4),
        }
        envelope = base64.b64encode(json.dumps(payload).encode()).decode()
        mac = hmac.new(secret.encode(), envelope.encode(), hashlib.sha256).digest()
        return f"{base64.b64encode(mac).decode()}.{envelope}"

    def hubspot(
        self,
        method: str,
        uri: str,
        body: bytes = b"",
        *,
        at: datetime | None = None,
        secret: str = HUBSPOT_SECRET,
    ) -> dict[str, str]:
        timestamp = str(int((at or self.clock()).timestamp() * 1000))
        return {
            "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, method, uri, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
        }

    def zoho(
        self,
        *,
        org: str = ORG,
        email: str = REP,
        record: RecordRef | None = ACCOUNT,
        at: datetime | None = None,
        secret: str = ZOHO_SECRET,
    ) -> str:
        return sign_widget_token(
            secret.encode(),
            org=org,
            user="zoho-user-1",
            email=email,
            module=record.object_type if record else None,
            record=record.record_id if record else None,
            now=at or self.clock(),
        )


@pytest.fixture
def crm(clock: Clock) -> Crm:
    return Crm(clock)


def _load_standins() -> ModuleType:
    """The actions suite's in-memory CRM and provider (tests/actions/standins.py)."""
    path = Path(__file__).parent.parent / "actions" / "standins.py"
    spec = importlib.util.spec_from_file_location("web_action_standins", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


STANDINS = _load_standins()
ActionFactory = Callable[[Principal], ActionContext]


def memory_actions(store: Store, clock: Clock, admins: frozenset[str]) -> ActionFactory:
    """Actions against one in-memory CRM and provider, as the verified caller."""
    connector = STANDINS.MemoryCrm(clock)
    provider = STANDINS.MemoryProvider()

    def context(caller: Principal) -> ActionContext:
        return ActionContext(
            store=store,
            connector=connector,
            actor=caller.actor(),
            provider=provider,
            clock=clock,
            org_id=caller.org_id,
            admins=admins,
        )

    return context


@pytest.fixture
def actions_factory() -> Callable[[Store, Clock, frozenset[str]], ActionFactory]:
    return memory_actions


@pytest.fixture
def services() -> WebServices:
    return WebServices(admins=frozenset({ADMIN}), session_ttl=timedelta(minutes=30))


@pytest.fixture
def settings() -> Settings:
    return web_settings()


@pytest.fixture
def app(store: Store, clock: Clock, services: WebServices, settings: Settings) -> FastAPI:
    return create_app(settings, store=store, clock=clock, services=services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


@dataclass
class Web:
    """The client and the signing CRM together, plus the shared test identities."""

    client: TestClient
    crm: Crm
    store: Store
    ORG: str = ORG
    OTHER_ORG: str = OTHER_ORG
    REP: str = REP
    ADMIN: str = ADMIN
    ACCOUNT: RecordRef = ACCOUNT

    def login(self, page: str = "panel", **canvas: Any) -> str:
        """Open the panel with a Canvas POST; the client keeps the session cookie.

        Returns the session's CSRF token, read from the page.
        """
        response = self.client.post(
            f"/salesforce/canvas?page={page}",
            data={"signed_request": self.crm.canvas(**canvas)},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        cookie = response.headers["set-cookie"].lower()
        for flag in ("httponly", "secure", "samesite=none", "max-age="):
            assert flag in cookie
        page_html = self.client.get("/panel")
        assert page_html.status_code == 200, page_html.text
        marker = 'name="csrf-token" content="'
        begin = page_html.text.index(marker) + len(marker)
        return page_html.text[begin : page_html.text.index('"', begin)]

    @staticmethod
    def csrf(token: str) -> dict[str, str]:
        return {CSRF_HEADER: token}


@pytest.fixture
def web(client: TestClient, crm: Crm, store: Store) -> Web:
    return Web(client, crm, store)
