"""The Salesforce connector through simple-salesforce over HTTPS against the sandbox.

Paging, incremental windows, refresh failures, the API budget and ``check()``; the
shared behaviour is in ``tests/contract``. Each test gets a fresh sandbox; the connector
is closed before the sandbox stops (an idle keep-alive TLS connection would hold up the
server's shutdown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from crm_meetings.connectors.salesforce import SalesforceConnector
from crm_meetings.errors import RefreshFailedError
from crm_meetings.model import CrmKind, Meeting, Person, RecordRef, new_meeting
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
