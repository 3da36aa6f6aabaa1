"""The Salesforce connector through simple-salesforce over HTTPS against the sandbox.

Paging, incremental windows, refresh failures, the JWT bearer flow, the API budget and
``check()``; the
shared behaviour is in ``tests/contract``. Each test gets a fresh sandbox; the connector
is closed before the sandbox stops (an idle keep-alive TLS connection would hold up the
server's shutdown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crm_meetings.config import SalesforceSettings
from crm_meetings.connectors.base import SentEmail
from crm_meetings.connectors.salesforce import SalesforceConnector
from crm_meetings.errors import RefreshFailedError
from crm_meetings.model import CrmKind, Invitee, Meeting, Person, RecordRef, new_meeting
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.salesforce import SalesforceEmulator
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

VENDOR = "salesforce"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.01)
START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
QUERY_PAGES = "*/query/{locator}"
_ids = count()
Build = Callable[..., SalesforceConnector]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox([VENDOR], seed=SeedSpec(seed=5, meetings=3, records=2)).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def build(sandbox: Sandbox) -> Iterator[Build]:
    """Connectors as the contract harness builds them; every one is closed at the end."""
    made: list[SalesforceConnector] = []

    def connector(**overrides: Any) -> SalesforceConnector:
        url = sandbox.url(VENDOR)
        values: dict[str, Any] = {
            "instance_url": url,
            "access_token": sandbox.token(VENDOR),
            "refresh_token": sandbox.refresh_token(VENDOR),
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "token_url": f"{url}/services/oauth2/token",
            "ca_path": sandbox.ca_path,
            "timeout": 10,
            "retry_policy": FAST,
        }
        made.append(SalesforceConnector(**{**values, **overrides}))
        return made[-1]

    try:
        yield connector
    finally:
        for one in made:
            one.close()


@pytest.fixture
def connector(build: Build) -> SalesforceConnector:
    return build()


def emulator(sandbox: Sandbox) -> SalesforceEmulator:
    found = sandbox.emulator(VENDOR)
    assert isinstance(found, SalesforceEmulator)
    return found


def account(sandbox: Sandbox) -> RecordRef:
    return RecordRef("Account", emulator(sandbox).seed_ids["record-0"])


def meeting(related: RecordRef | None = None, **fields: Any) -> Meeting:
    n = next(_ids)
    values: dict[str, Any] = {
        "crm": CrmKind.SALESFORCE,
        "subject": f"Meeting {n}",
        "start": START + timedelta(hours=n),
        "end": START + timedelta(hours=n, minutes=30),
        "timezone": "Europe/Paris",
        "organizer": Person("rep0@sales.example.com"),
        "now": START,
        "id_factory": lambda: f"sf-local-{n}",
        "invitees": (),
        "related": (related,) if related else (),
    }
    values.update(fields)
    return new_meeting(**values)


def create(connector: SalesforceConnector, n: int, related: RecordRef | None = None) -> list[str]:
    results = connector.create_many([meeting(related) for _ in range(n)])
    assert all(r.ok and r.record_id for r in results)
    return [r.record_id for r in results if r.record_id]


def small_pages(connector: SalesforceConnector) -> None:
    """Ask for the smallest SOQL batches Salesforce allows (200 rows a page)."""
    connector.session.headers["Sforce-Query-Options"] = "batchSize=200"


# --- SOQL paging ----------------------------------------------------------------------


def test_list_for_record_follows_next_records_url(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    record = account(sandbox)
    made = create(connector, 450, record)
    small_pages(connector)
    before = sandbox.calls.count(VENDOR, endpoint=QUERY_PAGES)
    found = [x.crm_record_id for x in connector.list_for_record(record)]
    assert set(made) <= set(found)
    assert len(found) == len(set(found)), "no row is read twice"
    assert sandbox.calls.count(VENDOR, endpoint=QUERY_PAGES) - before == 2  # 3 pages


def test_a_full_scan_pages_through_every_event(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    made = create(connector, 250)
    small_pages(connector)
    pages = list(connector.changed_since(None))
    assert len(pages) == 2
    assert all(p.full_scan for p in pages)
    seen = [x.crm_record_id for p in pages for x in p.meetings]
    assert set(made) <= set(seen)
    assert len(seen) == len(emulator(sandbox).rows["Event"])
    assert pages[-1].cursor is not None


# --- incremental windows --------------------------------------------------------------


def test_an_incremental_window_brings_updates_and_deletions(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    kept, gone = create(connector, 2)
    cursor = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    connector.delete(gone)
    pages = list(connector.changed_since(cursor))
    assert not any(p.full_scan for p in pages)
    assert kept in {x.crm_record_id for p in pages for x in p.meetings}
    assert gone not in {x.crm_record_id for p in pages for x in p.meetings}
    assert [gone] == [d for p in pages for d in p.deleted]
    assert pages[-1].cursor is not None
    assert pages[-1].cursor > cursor


def test_many_changed_ids_are_read_in_chunks_and_only_the_last_page_moves_the_cursor(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    made = create(connector, 201)
    cursor = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    pages = list(connector.changed_since(cursor))
    assert len(pages) == 2
    assert set(made) <= {x.crm_record_id for p in pages for x in p.meetings}
    assert pages[0].cursor == cursor
    assert pages[1].cursor is not None
    assert pages[1].cursor > cursor


@pytest.mark.parametrize("age", [timedelta(days=15), timedelta(days=40)])
def test_a_cursor_older_than_the_deleted_window_falls_back_to_a_full_scan(
    sandbox: Sandbox, build: Build, age: timedelta
) -> None:
    real_now = datetime.now(UTC)
    cursor = real_now.isoformat()
    connector = build(clock=lambda: real_now + age)  # the cursor is `age` old
    before = sandbox.calls.count(VENDOR, endpoint="*/updated") + sandbox.calls.count(
        VENDOR, endpoint="*/deleted"
    )
    pages = list(connector.changed_since(cursor))
    assert pages
    assert all(p.full_scan for p in pages)
    seeded = {x.crm_record_id for p in pages for x in p.meetings}
    assert seeded == set(emulator(sandbox).rows["Event"])
    after = sandbox.calls.count(VENDOR, endpoint="*/updated") + sandbox.calls.count(
        VENDOR, endpoint="*/deleted"
    )
    assert after == before, "no getUpdated/getDeleted call with a cursor Salesforce refuses"


def test_a_cursor_just_inside_the_window_stays_incremental(sandbox: Sandbox, build: Build) -> None:
    real_now = datetime.now(UTC)
    cursor = (real_now - timedelta(days=14)).isoformat()
    connector = build(clock=lambda: real_now)
    pages = list(connector.changed_since(cursor))
    assert not any(p.full_scan for p in pages)
    assert sandbox.calls.count(VENDOR, endpoint="*/deleted") == 1


# --- refresh failures -----------------------------------------------------------------


def test_a_refused_refresh_token_is_a_refresh_failed_error(sandbox: Sandbox, build: Build) -> None:
    connector = build(refresh_token="revoked-refresh-token")
    sandbox.expire_tokens(VENDOR)
    with pytest.raises(RefreshFailedError) as info:
        connector.get(emulator(sandbox).seed_ids["meeting-0"])
    assert info.value.vendor == VENDOR
    assert info.value.vendor_code == "invalid_grant"
    assert info.value.status == 400


def test_no_access_token_and_a_refused_refresh_token_fails_on_the_first_call(
    build: Build,
) -> None:
    connector = build(access_token=None, refresh_token="revoked-refresh-token")
    with pytest.raises(RefreshFailedError, match="refused"):
        connector.record_types()


def test_a_401_after_a_refresh_is_a_refresh_failed_error(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    event = emulator(sandbox).seed_ids["meeting-0"]
    sandbox.faults.set(
        VENDOR, FaultPlan(fail_next=2, fail_kind=FaultKind.UNAUTHORIZED), endpoint="*/query"
    )
    with pytest.raises(RefreshFailedError, match="refreshed access token was refused"):
        connector.get(event)
    assert sandbox.calls.count(VENDOR, endpoint="*/oauth2/token") == 1, "one refresh only"
    assert sandbox.calls.count(VENDOR, endpoint="*/query") == 2


# --- budget and check -----------------------------------------------------------------


def test_budget_is_read_from_sforce_limit_info(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    assert connector.budget().used is None, "nothing observed before the first call"
    connector.record_types()
    connector.record_types()
    org = emulator(sandbox)
    budget = connector.budget()
    assert (budget.used, budget.limit) == (org.api_usage, org.api_limit)
    assert budget.remaining == org.api_limit - org.api_usage
    assert budget.observed_at is not None
    org.api_usage = org.api_limit - 10
    connector.record_types()
    assert connector.budget().remaining == 9


def test_check_passes_on_a_complete_org(connector: SalesforceConnector) -> None:
    checks = connector.check()
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    names = {c.name for c in checks}
    assert {"salesforce CRM_Meeting_Session__c", "salesforce CRM_Meeting_Participant__c"} <= names


def test_check_names_a_missing_history_object_and_how_to_fix_it(
    sandbox: Sandbox, connector: SalesforceConnector
) -> None:
    emulator(sandbox).missing_objects.add("CRM_Meeting_Participant__c")
    checks = {c.name: c for c in connector.check()}
    failed = checks["salesforce CRM_Meeting_Participant__c"]
    assert not failed.ok
    assert "does not exist" in failed.detail
    assert "Deploy CRM_Meeting_Participant__c" in failed.fix
    assert checks["salesforce CRM_Meeting_Session__c"].ok
    assert checks["salesforce credentials"].ok


def test_check_reports_bad_credentials_with_a_fix(sandbox: Sandbox, build: Build) -> None:
    connector = build(refresh_token="revoked-refresh-token")
    sandbox.expire_tokens(VENDOR)
    (check,) = connector.check()
    assert not check.ok
    assert "refresh_token" in check.fix


# --- OAuth 2.0 JWT bearer -------------------------------------------------------------

JWT_APP = "jwt-connected-app"
INTEGRATION_USER = "integration@crm-meetings.example.sandbox"


def key_pair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM): a throwaway RSA pair, as for a connected app."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture(scope="module")
def app_keys() -> tuple[bytes, bytes]:
    return key_pair()


@pytest.fixture
def jwt_sandbox(sandbox: Sandbox, app_keys: tuple[bytes, bytes]) -> Sandbox:
    """The sandbox with the connected app's certificate (its public key) uploaded."""
    emulator(sandbox).register_jwt_key(JWT_APP, app_keys[1])
    return sandbox


def jwt_connector(build: Build, private_key: bytes, **overrides: Any) -> SalesforceConnector:
    values: dict[str, Any] = {
        "access_token": None,
        "refresh_token": None,
        "client_id": JWT_APP,
        "client_secret": None,
        "username": INTEGRATION_USER,
        "private_key": private_key,
    }
    return build(**{**values, **overrides})


def test_jwt_bearer_sign_in_works(
    jwt_sandbox: Sandbox, build: Build, app_keys: tuple[bytes, bytes]
) -> None:
    connector = jwt_connector(build, app_keys[0])
    assert connector.uses_jwt
    event = emulator(jwt_sandbox).seed_ids["meeting-0"]
    assert connector.get(event).crm_record_id == event
    assert jwt_sandbox.calls.count(VENDOR, endpoint="*/oauth2/token") == 1


def test_the_assertion_carries_the_documented_claims(
    jwt_sandbox: Sandbox, build: Build, app_keys: tuple[bytes, bytes]
) -> None:
    connector = jwt_connector(build, app_keys[0])
    claims = jwt.decode(
        connector._assertion(),
        app_keys[1],
        algorithms=["RS256"],
        audience=jwt_sandbox.url(VENDOR),
    )
    assert (claims["iss"], claims["sub"]) == (JWT_APP, INTEGRATION_USER)
    lifetime = claims["exp"] - datetime.now(UTC).timestamp()
    assert 0 < lifetime <= 180


def test_an_expired_jwt_session_signs_in_again_with_a_new_assertion(
    jwt_sandbox: Sandbox, build: Build, app_keys: tuple[bytes, bytes]
) -> None:
    connector = jwt_connector(build, app_keys[0])
    event = emulator(jwt_sandbox).seed_ids["meeting-0"]
    connector.get(event)
    jwt_sandbox.expire_tokens(VENDOR)
    assert connector.get(event).crm_record_id == event
    assert jwt_sandbox.calls.count(VENDOR, endpoint="*/oauth2/token") == 2


def test_a_wrong_key_is_a_clear_refresh_failed_error(jwt_sandbox: Sandbox, build: Build) -> None:
    other_private, _ = key_pair()
    connector = jwt_connector(build, other_private)
    with pytest.raises(RefreshFailedError) as info:
        connector.record_types()
    error = info.value
    assert (error.vendor, error.status, error.vendor_code) == (VENDOR, 400, "invalid_grant")
    assert "JWT sign-in as integration@crm-meetings.example.sandbox refused" in (error.message)
    assert "invalid assertion" in error.message
    assert "private_key_file" in error.hint


def test_an_unknown_user_or_app_is_refused_by_name(
    jwt_sandbox: Sandbox, build: Build, app_keys: tuple[bytes, bytes]
) -> None:
    stranger = jwt_connector(build, app_keys[0], username="nobody@example.com")
    with pytest.raises(RefreshFailedError, match="hasn't approved this consumer"):
        stranger.record_types()
    unknown_app = jwt_connector(build, app_keys[0], client_id="not-registered")
    with pytest.raises(RefreshFailedError) as info:
        unknown_app.record_types()
    assert info.value.vendor_code == "invalid_client_id"


def test_a_wrong_audience_is_refused(
    jwt_sandbox: Sandbox, build: Build, app_keys: tuple[bytes, bytes]
) -> None:
    connector = jwt_connector(build, app_keys[0], audience="https://example.my.site.com")
    with pytest.raises(RefreshFailedError, match="audience is invalid"):
        connector.record_types()


@pytest.mark.parametrize(
    ("skew", "reason"),
    [
        (timedelta(minutes=-10), "expired authorization code"),  # exp already passed
        (timedelta(minutes=10), "invalid assertion"),  # valid for longer than 3 minutes
    ],
)
def test_an_assertion_outside_its_three_minutes_is_refused(
    jwt_sandbox: Sandbox,
    build: Build,
    app_keys: tuple[bytes, bytes],
    skew: timedelta,
    reason: str,
) -> None:
    connector = jwt_connector(build, app_keys[0], clock=lambda: datetime.now(UTC) + skew)
    with pytest.raises(RefreshFailedError, match=reason):
        connector.record_types()


def test_an_unreadable_private_key_is_a_clear_error(build: Build) -> None:
    connector = jwt_connector(build, b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(RefreshFailedError, match="cannot sign the JWT assertion") as info:
        connector.record_types()
    assert "private_key_file" in info.value.hint


def test_check_with_a_wrong_key_says_which_setting_to_fix(
    jwt_sandbox: Sandbox, build: Build
) -> None:
    connector = jwt_connector(build, key_pair()[0])
    (check,) = connector.check()
    assert not check.ok
    assert "private_key_file" in check.fix


def test_from_settings_uses_jwt_with_a_username_and_a_key_file(
    jwt_sandbox: Sandbox, app_keys: tuple[bytes, bytes], tmp_path: Path
) -> None:
    key_file = tmp_path / "server.key"
    key_file.write_bytes(app_keys[0])
    settings = SalesforceSettings(
        enabled=True,
        login_url=jwt_sandbox.url(VENDOR),
        client_id=JWT_APP,
        username=INTEGRATION_USER,
        private_key_file=key_file,
        ca_bundle=jwt_sandbox.ca_path,
    )
    connector = SalesforceConnector.from_settings(settings)
    try:
        assert connector.uses_jwt
        assert connector.audience == jwt_sandbox.url(VENDOR)
        event = emulator(jwt_sandbox).seed_ids["meeting-0"]
        assert connector.get(event).crm_record_id == event
    finally:
        connector.close()


def test_from_settings_uses_the_refresh_token_otherwise(sandbox: Sandbox) -> None:
    settings = SalesforceSettings(
        enabled=True,
        login_url=sandbox.url(VENDOR),
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        refresh_token=sandbox.refresh_token(VENDOR),
        username=INTEGRATION_USER,  # a username alone does not switch to JWT
        ca_bundle=sandbox.ca_path,
    )
    connector = SalesforceConnector.from_settings(settings)
    try:
        assert not connector.uses_jwt
        event = emulator(sandbox).seed_ids["meeting-0"]
        assert connector.get(event).crm_record_id == event
    finally:
        connector.close()


def test_logged_email_relates_to_contacts_and_a_replay_completes_them(
    connector: SalesforceConnector, sandbox: Sandbox
) -> None:
    box = emulator(sandbox)
    contact, _ = box.insert("Contact", {"LastName": "Zed", "Email": "zed@client.example"})
    assert contact is not None
    zed = Invitee("zed@client.example", "Zed", crm_relation=RecordRef("Contact", contact))
    on_account = meeting(account(sandbox), invitees=(zed, Invitee("amy@client.example")))
    sent = SentEmail(
        key="k-relations", message_id="<imip.1@acme.example>", meeting=on_account,
        sender=Person("sales@acme.example", "Acme Sales"),
        recipients=("zed@client.example", "amy@client.example"), subject="Invitation: Demo",
        text="Hello", html="<p>Hello</p>", sent_at=START,
    )  # fmt: skip
    (first,) = connector.log_emails([sent])
    assert first.ok
    assert first.record_id
    relations = sandbox.state(VENDOR)["email_relations"]
    assert [(r["RelationId"], r["RelationType"]) for r in relations] == [(contact, "ToAddress")]
    box.remove("EmailMessageRelation", relations[0]["Id"])  # the first attempt stopped there
    (again,) = connector.log_emails([replace(sent, maybe_logged=True)])
    assert (again.ok, again.record_id) == (True, first.record_id)
    assert len(sandbox.state(VENDOR)["emails"]) == 1
    assert [r["RelationId"] for r in sandbox.state(VENDOR)["email_relations"]] == [contact]
