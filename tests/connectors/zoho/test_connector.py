"""ZohoConnector over HTTPS against the sandbox's Zoho emulator."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_meetings.connectors.base import HistoryItem, HistoryRun
from crm_meetings.connectors.zoho import ZohoConnector, ZohoCredentials
from crm_meetings.errors import NotFoundError, RefreshFailedError, RemoteError, ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Participant,
    Person,
    RecordRef,
    Session,
    new_meeting,
)
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.server import Sandbox

from .conftest import connector_for, settled_calls

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def account(sandbox: Sandbox) -> RecordRef:
    return RecordRef("Accounts", sandbox.emulator("zoho").records("Accounts")[0]["id"])  # type: ignore[attr-defined]


def meetings(sandbox: Sandbox, n: int, **fields: Any) -> list[Any]:
    values: dict[str, Any] = {
        "invitees": (Invitee("ann@client.example", "Ann"),),
        "related": (account(sandbox),),
    }
    values.update(fields)
    return [
        new_meeting(
            crm=CrmKind.ZOHO,
            subject=f"Meeting {i}",
            start=T0 + timedelta(hours=i),
            end=T0 + timedelta(hours=i, minutes=30),
            timezone="Europe/Paris",
            organizer=Person("rep0@sales.example.com"),
            now=T0,
            id_factory=lambda i=i: f"local-{i}",
            **values,
        )
        for i in range(n)
    ]


def test_life_cycle(sandbox: Sandbox, connector: ZohoConnector) -> None:
    (meeting,) = meetings(sandbox, 1)
    created = connector.create(meeting)
    assert created.crm_record_id
    assert created.crm_modified_at
    fetched = connector.get(created.crm_record_id)
    assert (fetched.id, fetched.uid, fetched.subject) == (meeting.id, meeting.uid, meeting.subject)
    assert [i.email for i in fetched.invitees] == ["ann@client.example"]
    moved, change = created.revise(
        subject="Moved", start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1)
    )
    connector.update(moved, change)
    again = connector.get(created.crm_record_id)
    assert (again.subject, again.start, again.sequence) == ("Moved", moved.start, 1)
    assert created.crm_record_id in {
        m.crm_record_id for m in connector.list_for_record(account(sandbox))
    }
    pages = list(connector.changed_since(None))
    assert pages[0].full_scan
    assert pages[-1].cursor
    assert created.crm_record_id in {m.crm_record_id for p in pages for m in p.meetings}
    connector.delete(created.crm_record_id)
    connector.delete(created.crm_record_id)
    with pytest.raises(NotFoundError):
        connector.get(created.crm_record_id)
    later = list(connector.changed_since(pages[-1].cursor))
    assert created.crm_record_id in {d for p in later for d in p.deleted}


def test_an_incremental_read_overlaps_one_second(
    sandbox: Sandbox, connector: ZohoConnector
) -> None:
    cursor = list(connector.changed_since(None))[-1].cursor
    assert cursor is not None
    before = connector.calls.total()
    pages = list(connector.changed_since(cursor))
    assert pages[-1].cursor == cursor
    assert not any(p.full_scan for p in pages)
    floor = datetime.fromisoformat(cursor) - timedelta(seconds=1)
    assert all(m.crm_modified_at and m.crm_modified_at >= floor for p in pages for m in p.meetings)
    assert connector.calls.total() - before == 2  # Events and deleted


@pytest.mark.parametrize("size", [1, 100, 101, 1000])
def test_batch_sizes_use_the_fewest_calls(
    sandbox: Sandbox, connector: ZohoConnector, size: int
) -> None:
    batch = meetings(sandbox, size, invitees=())
    before = settled_calls(sandbox, method="POST")
    results = connector.create_many(batch)
    assert [r.key for r in results] == [m.id for m in batch]
    assert all(r.ok for r in results)
    assert connector.calls.total(endpoint="/crm/v8/Events") == math.ceil(size / 100)
    assert settled_calls(sandbox, method="POST") - before == math.ceil(size / 100)


def test_partial_failure_names_the_field(sandbox: Sandbox, connector: ZohoConnector) -> None:
    good, bad = meetings(sandbox, 2, invitees=())
    sandbox.emulator("zoho").reject_subject = bad.subject  # type: ignore[attr-defined]
    results = connector.create_many([good, bad])
    assert [r.ok for r in results] == [True, False]
    assert isinstance(results[1].error, ValidationError)
    assert results[1].error.field == "subject"
    assert "Event_Title" in str(results[1].error)


def test_validation_error_on_update_names_the_field(
    sandbox: Sandbox, connector: ZohoConnector
) -> None:
    created = connector.create(meetings(sandbox, 1)[0])
    sandbox.emulator("zoho").reject_subject = "Nope"  # type: ignore[attr-defined]
    renamed, change = created.revise(subject="Nope")
    with pytest.raises(ValidationError) as info:
        connector.update(renamed, change)
    assert info.value.field == "subject"


def test_expired_token_refreshes_once(sandbox: Sandbox, connector: ZohoConnector) -> None:
    created = connector.create(meetings(sandbox, 1)[0])
    assert created.crm_record_id
    sandbox.env.tokens.expire("zoho")
    tokens: list[str] = []
    connector._on_token = tokens.append
    assert connector.get(created.crm_record_id).subject == created.subject
    assert len(tokens) == 1
    assert connector.calls.total(endpoint="/oauth/v2/token") == 1


def test_a_rejected_refresh_token_fails_clearly(sandbox: Sandbox) -> None:
    url = sandbox.url("zoho")
    with ZohoConnector(
        ZohoCredentials("id", "secret", "revoked", "stale"),
        api_url=url,
        accounts_url=url,
        verify=sandbox.ca_path,
    ) as zoho:
        with pytest.raises(RefreshFailedError) as info:
            zoho.record_types()
        assert info.value.vendor_code == "invalid_code"
        (credentials,) = zoho.check()
        assert not credentials.ok
        assert "refresh token" in credentials.fix


def test_rate_limit_waits_and_succeeds(sandbox: Sandbox) -> None:
    waits: list[float] = []
    with connector_for(sandbox, sleep=waits.append) as zoho:
        sandbox.faults.set(
            "zoho", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=0.25)
        )
        assert zoho.record_types()
        assert waits == [0.25]


def test_persistent_5xx_ends_in_a_clear_error(sandbox: Sandbox, connector: ZohoConnector) -> None:
    sandbox.faults.set("zoho", FaultPlan(server_error=1.0))
    with pytest.raises(RemoteError) as info:
        connector.record_types()
    assert (info.value.status, info.value.vendor_code) == (500, "INTERNAL_ERROR")
    assert connector.calls.total() == 4  # the policy's bound


def daily_sessions(n: int) -> tuple[Session, ...]:
    """``n`` sessions of one meeting, a day apart, each attended by Ann."""
    join = T0 + timedelta(minutes=1)
    return tuple(
        Session(
            "zoom",
            f"uuid-{day}",
            "81234567890",
            T0 + timedelta(days=day),
            T0 + timedelta(days=day, minutes=30),
            (Participant("Ann", join, join + timedelta(minutes=20), "ann@client.example"),),
        )
        for day in range(n)
    )


def test_history_twice_writes_once(sandbox: Sandbox, connector: ZohoConnector) -> None:
    created = connector.create(meetings(sandbox, 1)[0])
    sessions = daily_sessions(3)
    first = connector.write_history_many([HistoryItem(created, sessions)])
    assert [r.ok for r in first] == [True, True, True]
    state = sandbox.emulator("zoho").state()["history_sessions"]
    before = connector.calls.total()
    second = connector.write_history_many([HistoryItem(created, sessions)])
    assert [r.record_id for r in second] == [r.record_id for r in first]
    assert sandbox.emulator("zoho").state()["history_sessions"] == state
    assert connector.calls.total() - before == 1  # one read, no write


def test_history_in_a_checked_run_upserts_without_reading(
    sandbox: Sandbox, connector: ZohoConnector
) -> None:
    """The sync engine already compared the sessions with its store: 150 sessions are two
    upserts and no COQL read. Replayed (a crash after Zoho accepted, before the store
    committed), the upsert on Provider_Session_Id updates the same records: no duplicate."""
    created = connector.create(meetings(sandbox, 1)[0])
    sessions = daily_sessions(150)
    items = [HistoryItem(created, sessions)]
    before = connector.calls.total()
    first = connector.write_history_many(items, run=HistoryRun(checked=True))
    assert all(r.ok for r in first)
    assert connector.calls.total() - before == 2
    assert connector.calls.total(endpoint="/crm/v8/coql") == 0

    replay = connector.write_history_many(items, run=HistoryRun(checked=True))
    assert [r.record_id for r in replay] == [r.record_id for r in first]
    stored = sandbox.emulator("zoho").state()["history_sessions"]
    assert sorted(r["Provider_Session_Id"] for r in stored) == sorted(
        s.provider_session_id for s in sessions
    )
    assert connector.calls.total() - before == 4
    assert connector.calls.total(endpoint="/crm/v8/coql") == 0


def test_check_and_record_types(connector: ZohoConnector) -> None:
    checks = connector.check()
    assert [c.name for c in checks] == [
        "zoho.credentials",
        "zoho.fields.Events",
        "zoho.fields.CRM_Meeting_Sessions",
        "zoho.budget",
    ]
    assert all(c.ok for c in checks), checks
    assert connector.budget().remaining is not None
    assert {t.name for t in connector.record_types()} == {"Standard", "Customer Meeting"}


def test_the_api_version_is_a_setting_and_a_bad_one_names_the_key() -> None:
    from crm_meetings.connectors.zoho import ZohoConnector, ZohoCredentials
    from crm_meetings.errors import ConfigurationError

    credentials = ZohoCredentials("id", "secret", "refresh")
    assert ZohoConnector(credentials, api_version="v9").api_path == "/crm/v9"
    with pytest.raises(ConfigurationError) as info:
        ZohoConnector(credentials, api_version="8")
    assert info.value.key == "zoho.api_version"
