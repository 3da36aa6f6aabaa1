"""Web fixtures: settings with test secrets, the app over a migrated store, signed callers.

``crm`` signs what the three CRMs would send (Canvas signed requests, HubSpot v3
headers, Zoho widget tokens) with the test secrets; ``client`` speaks HTTPS to the app
in-process so the Secure session cookie is kept. ``stack`` is the real services behind
the actions: a Salesforce + Zoom sandbox, the Salesforce connector as the contract harness
builds it, a Zoom provider as the conferencing suite builds it, and an aiosmtpd sink.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import secrets
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import icalendar
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI

from crm_meetings.calendar.outbox import DeliveryReport, SmtpConfig, deliver_pending
from crm_meetings.config import SalesforceSettings, Settings, WebSettings
from crm_meetings.model import CrmKind, RecordRef
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import Store
from crm_meetings.web.app import create_app
from crm_meetings.web.auth import hubspot_v3_signature, sign_widget_token
from crm_meetings.web.security import CSRF_HEADER
from crm_meetings.web.services import WebServices
from crm_meetings.web.wiring import Clients, live_services

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


def web_settings(*, salesforce_org: str | None = None, **web: Any) -> Settings:
    """The test secrets; ``salesforce_org`` binds the Salesforce connection to an org."""
    return Settings(
        salesforce=SalesforceSettings(org_id=salesforce_org),
        web=WebSettings(
            session_secret="test-session-secret",  # type: ignore[arg-type]
            salesforce_canvas_secret=CANVAS_SECRET,  # type: ignore[arg-type]
            hubspot_client_secret=HUBSPOT_SECRET,  # type: ignore[arg-type]
            zoho_widget_secret=ZOHO_SECRET,  # type: ignore[arg-type]
            **web,
        ),
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
        profile: str | None = None,
    ) -> str:
        user = {"userId": "005" + hashlib.sha256(email.encode()).hexdigest()[:12], "email": email}
        if profile is not None:
            user["profileId"] = profile
        context: dict[str, Any] = {
            "user": user,
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
        profile: str | None = None,
    ) -> str:
        return sign_widget_token(
            secret.encode(),
            org=org,
            user="zoho-user-1",
            email=email,
            module=record.object_type if record else None,
            record=record.record_id if record else None,
            now=at or self.clock(),
            profile=profile,
        )


@pytest.fixture
def crm(clock: Clock) -> Crm:
    return Crm(clock)


TESTS = Path(__file__).parent.parent
SALESFORCE = load_module(TESTS / "contract" / "harness_salesforce.py")
PROVIDERS = load_module(TESTS / "conferencing" / "conftest.py")
ORG_SENDER = load_module(TESTS / "actions" / "test_org_sender.py")
STACK_SEED = SeedSpec(seed=8, meetings=6, organizers=1, records=2, provider="zoom")


class MailSink:
    """An aiosmtpd server on 127.0.0.1 keeping (recipient, raw message) pairs."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        self.received.extend((str(rcpt), raw) for rcpt in envelope.rcpt_tos)
        return "250 2.0.0 Accepted"

    @property
    def config(self) -> SmtpConfig:
        return SmtpConfig(host="127.0.0.1", port=self.port, security="none", timeout=5)

    def itip(self) -> list[tuple[str, int, str]]:
        """(METHOD, SEQUENCE, recipient) of each message received, in order."""
        found: list[tuple[str, int, str]] = []
        for recipient, raw in self.received:
            message = email.message_from_bytes(raw, policy=email.policy.default)
            part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
            calendar = icalendar.Calendar.from_ical(part.get_payload(decode=True))
            event = calendar.walk("VEVENT")[0]
            found.append((str(calendar["METHOD"]), int(event["SEQUENCE"]), recipient))
        return found

    def __enter__(self) -> MailSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@dataclass
class Stack:
    """The real services behind the web app: sandboxed Salesforce and Zoom, an SMTP sink.

    ``organizer`` is the seeded rep (a Zoom user) who opens the panel on ``account``.
    """

    sandbox: Sandbox
    clients: Clients
    mail: MailSink
    account: RecordRef
    organizer: str

    def services(self, store: Store, clock: Clock, **extra: Any) -> WebServices:
        """The web services on this stack, as ``crm-meetings web serve`` wires them."""
        admins = frozenset({ADMIN})
        settings = web_settings(salesforce_org=ORG)
        return live_services(settings, store, self.clients, clock=clock, admins=admins, **extra)

    def events(self) -> list[dict[str, Any]]:
        """The Salesforce emulator's Event rows."""
        return list(self.sandbox.emulator("salesforce").state()["events"])

    def event(self, record_id: str) -> dict[str, Any]:
        """One Event row by its Salesforce id."""
        return next(e for e in self.events() if e["Id"] == record_id)

    def deliver(self, store: Store, now: datetime) -> DeliveryReport:
        """Send the outbox to the sink, as the worker's sender loop does."""
        report = deliver_pending(store, self.mail.config, now)
        assert not report.failed
        assert not report.deferred
        return report


@pytest.fixture
def stack() -> Iterator[Stack]:
    """A started Salesforce + Zoom sandbox, its clients and a mail sink; all closed after."""
    sandbox = Sandbox(["salesforce", "zoom"], seed=STACK_SEED).start()
    clients = Clients(
        lambda crm: SALESFORCE.make_connector(sandbox),
        lambda name: PROVIDERS.build_zoom(sandbox, []),
        crms=[CrmKind.SALESFORCE],
        providers=["zoom"],
    )
    try:
        assert sandbox.data is not None
        with MailSink() as mail:
            yield Stack(
                sandbox,
                clients,
                mail,
                SALESFORCE.related_record(sandbox),
                sandbox.data.users[0].email,
            )
    finally:
        clients.close()  # before the sandbox stops: no idle TLS connection left
        sandbox.stop()


#: ``org_address(store, org, profiles)``: a confirmed organisation address (Acme Sales,
#: sales@acme.example) the org's invitations go out from, for ``profiles``
OrgAddress = Callable[[Store, str, list[str]], None]


@pytest.fixture
def org_address() -> OrgAddress:
    configure: OrgAddress = ORG_SENDER.configure
    return configure


@pytest.fixture
def services() -> WebServices:
    return WebServices(admins=frozenset({ADMIN}), session_ttl=timedelta(minutes=30))


@pytest.fixture
def settings(request: pytest.FixtureRequest) -> Settings:
    """With the ``stack`` (a Salesforce connection) the app serves the org ``ORG`` only."""
    return web_settings(salesforce_org=ORG if "stack" in request.fixturenames else None)


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
