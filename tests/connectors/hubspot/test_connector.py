"""The HubSpot connector through hubspot-api-client over HTTPS against the sandbox."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from crm_meetings.connectors.base import HistoryItem, HistoryRun
from crm_meetings.connectors.hubspot import HubSpotConnector
from crm_meetings.errors import (
    NotFoundError,
    RateLimitedError,
    RefreshFailedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    Participant,
    Person,
    RecordRef,
    Session,
    new_meeting,
)
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.hubspot import HubSpotEmulator
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
_ids = count()
Calls = Callable[[], int]


def meeting(**fields: Any) -> Meeting:
    n = next(_ids)
    values: dict[str, Any] = {
        "crm": CrmKind.HUBSPOT,
        "subject": f"Meeting {n}",
        "start": START + timedelta(hours=n),
        "end": START + timedelta(hours=n, minutes=30),
        "timezone": "Europe/Paris",
        "organizer": Person("rep0@sales.example.com"),
        "now": START,
        "id_factory": lambda: f"local-{n}",
        "invitees": (Invitee("ann@client.example", "Ann Client"),),
    }
    values.update(fields)
    return new_meeting(**values)


def company(sandbox: Sandbox) -> RecordRef:
    links = sandbox.emulator("hubspot").state()["associations"]
    return RecordRef("Company", next(link[3] for link in links if link[2] == "companies"))


def emulator(sandbox: Sandbox) -> HubSpotEmulator:
    found = sandbox.emulator("hubspot")
    assert isinstance(found, HubSpotEmulator)
    return found


def test_life_cycle(connector: HubSpotConnector, sandbox: Sandbox) -> None:
    record = company(sandbox)
    created = connector.create(meeting(related=(record,), location="Room 1"))
    assert created.crm_record_id
    assert created.organizer.email == "rep0@sales.example.com"
    stored = emulator(sandbox).store.records["meetings"][created.crm_record_id].properties
    assert stored["hubspot_owner_id"] == "100"  # the organizer's owner
    assert connector.get(created.crm_record_id) == created

    added = Invitee("bob@client.example", "Bob")
    moved, change = created.revise(
        start=created.start + timedelta(days=1),
        end=created.end + timedelta(days=1),
        invitees=(*created.invitees, added),
    )
    after = connector.update(moved, change)
    assert after.start == moved.start
    assert [i.email for i in after.invitees] == ["ann@client.example", "bob@client.example"]
    assert after.sequence == moved.sequence

    assert created.crm_record_id in {m.crm_record_id for m in connector.list_for_record(record)}
    pages = list(connector.changed_since(None))
    assert created.crm_record_id in {m.crm_record_id for p in pages for m in p.meetings}
    cursor = pages[-1].cursor
    connector.delete(created.crm_record_id)
    connector.delete(created.crm_record_id)
    with pytest.raises(NotFoundError):
        connector.get(created.crm_record_id)
    later = list(connector.changed_since(cursor))
    assert created.crm_record_id in {d for p in later for d in p.deleted}
    assert not any(m.crm_record_id == created.crm_record_id for p in later for m in p.meetings)


def test_get_is_one_call(connector: HubSpotConnector, hubspot_calls: Calls) -> None:
    created = connector.create(meeting())
    assert created.crm_record_id
    before = hubspot_calls()
    connector.get(created.crm_record_id)
    assert hubspot_calls() - before == 1


@pytest.mark.parametrize("size", [1, 100, 101, 1000])
def test_batch_create_call_counts(
    connector: HubSpotConnector, sandbox: Sandbox, hubspot_calls: Calls, size: int
) -> None:
    meetings = [meeting(invitees=(), related=(company(sandbox),)) for _ in range(size)]
    before = hubspot_calls()
    results = connector.create_many(meetings)
    assert hubspot_calls() - before == math.ceil(size / 100)
    assert [r.key for r in results] == [m.id for m in meetings]
    assert all(r.ok for r in results)
    assert len(emulator(sandbox).state()["meetings"]) == 6 + size


def test_partial_failure_is_per_record(connector: HubSpotConnector, sandbox: Sandbox) -> None:
    good, bad = meeting(invitees=()), meeting(invitees=())
    emulator(sandbox).reject_subject = bad.subject
    results = connector.create_many([good, bad])
    assert [r.ok for r in results] == [True, False]
    error = results[1].error
    assert isinstance(error, ValidationError)
    assert error.field == "hs_meeting_title"


def test_validation_error_names_the_property(connector: HubSpotConnector) -> None:
    created = connector.create(meeting())
    moved, change = created.revise(record_type="Board meeting")
    with pytest.raises(ValidationError) as info:
        connector.update(moved, change)
    assert info.value.field == "hs_activity_type"


def test_expired_token_refreshes_once(
    connector: HubSpotConnector, sandbox: Sandbox, hubspot_calls: Calls
) -> None:
    created = connector.create(meeting())
    assert created.crm_record_id
    sandbox.env.tokens.expire("hubspot")
    before = hubspot_calls()
    assert connector.get(created.crm_record_id).subject == created.subject
    assert hubspot_calls() - before == 3  # 401, token, the repeated read
    assert sandbox.calls.count("hubspot", endpoint="/oauth/v1/token") == 1


def test_refresh_rejected_is_a_clear_error(sandbox: Sandbox) -> None:
    from crm_meetings.connectors.hubspot import OAuthCredentials

    connector = HubSpotConnector(
        sandbox.token("hubspot", ttl=0.001),
        base_url=sandbox.url("hubspot"),
        ca_path=sandbox.ca_path,
        oauth=OAuthCredentials("not-a-refresh-token", "id", "secret"),
    )
    try:
        with pytest.raises(RefreshFailedError):
            connector.get("1")
    finally:
        connector.close()


def test_rate_limit_waits_for_retry_after(sandbox: Sandbox, hubspot_calls: Calls) -> None:
    waits: list[float] = []
    connector = HubSpotConnector(
        sandbox.token("hubspot"),
        base_url=sandbox.url("hubspot"),
        ca_path=sandbox.ca_path,
        sleep=waits.append,
    )
    try:
        created = connector.create(meeting(invitees=()))
        assert created.crm_record_id
        sandbox.faults.set(
            "hubspot", FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=0.05)
        )
        before = hubspot_calls()
        assert connector.get(created.crm_record_id).crm_record_id == created.crm_record_id
        assert hubspot_calls() - before == 2
        assert waits == [0.05]
        assert connector.budget().limit == 250_000
    finally:
        connector.close()


def test_rate_limit_past_the_policy_gives_up(sandbox: Sandbox) -> None:
    connector = HubSpotConnector(
        sandbox.token("hubspot"),
        base_url=sandbox.url("hubspot"),
        ca_path=sandbox.ca_path,
        retry_policy=RetryPolicy(attempts=2, max_retry_after=1.0),
    )
    sandbox.faults.set("hubspot", FaultPlan(rate_limited=1.0, retry_after=30))
    try:
        with pytest.raises(RateLimitedError) as info:
            connector.get("1")
        assert info.value.retry_after == 30
    finally:
        connector.close()


def test_persistent_5xx_ends_in_a_clear_error(
    connector: HubSpotConnector, sandbox: Sandbox, hubspot_calls: Calls
) -> None:
    sandbox.faults.set("hubspot", FaultPlan(server_error=1.0))
    before = hubspot_calls()
    with pytest.raises(RemoteError) as info:
        connector.get("10000000001")
    assert info.value.status == 500
    assert info.value.vendor == "hubspot"
    assert hubspot_calls() - before == 3  # the policy's three attempts


def test_history_twice_writes_nothing_new(connector: HubSpotConnector, sandbox: Sandbox) -> None:
    created = connector.create(meeting())
    join = created.start + timedelta(minutes=1)
    sessions = tuple(
        Session(
            "zoom",
            f"session-{n}",
            "81234567890",
            created.start + timedelta(days=n),
            created.end + timedelta(days=n),
            (
                Participant("Ann", join, join + timedelta(minutes=20), "ann@client.example"),
                Participant("Guest", join, join + timedelta(minutes=5)),
            ),
        )
        for n in range(2)
    )
    first = connector.write_history_many([HistoryItem(created, sessions)])
    assert [r.ok for r in first] == [True, True]
    state = emulator(sandbox).state()
    assert len(state["sessions"]) == 2
    assert {(link[2]) for link in state["session_associations"]} == {"meetings", "contacts"}
    stored = connector.get(created.crm_record_id or "")
    assert stored.subject == created.subject
    props = emulator(sandbox).store.records["meetings"][created.crm_record_id or ""].properties
    assert props["hs_meeting_outcome"] == "COMPLETED"
    assert props["crm_meetings_session_count"] == "2"
    again = connector.write_history_many([HistoryItem(created, sessions)])
    assert [r.record_id for r in again] == [r.record_id for r in first]
    assert emulator(sandbox).state() == state


def test_history_in_one_run_reads_each_email_once(
    connector: HubSpotConnector, hubspot_calls: Calls
) -> None:
    """A sync run shares its contact lookups: an e-mail read (contact or not) is not read
    again by a later call of the same run; outside a run each call reads its own."""
    created = [connector.create(meeting()) for _ in range(4)]
    join = START + timedelta(minutes=1)

    def item(created: Meeting, n: int, *emails: str) -> HistoryItem:
        people = tuple(Participant(e, join, join + timedelta(minutes=9), e) for e in emails)
        return HistoryItem(created, (Session("zoom", f"run-{n}", "8123", START, join, people),))

    connector.session_object()  # the schema read, once per connector
    run = HistoryRun(checked=True)
    # one outcome update, one contact read, one session upsert, links to meeting and contact
    per_call = [5, 4, 5]
    made = []
    for n, emails in enumerate(
        [
            ("ann@client.example", "guest@elsewhere.example"),
            ("Ann@Client.example", "guest@elsewhere.example"),  # both known now
            ("ann@client.example", "new@elsewhere.example"),  # one new address: one read
        ]
    ):
        before = hubspot_calls()
        (result,) = connector.write_history_many([item(created[n], n, *emails)], run=run)
        assert result.ok
        made.append(hubspot_calls() - before)
    assert made == per_call
    assert len(run.contacts) == 3

    before = hubspot_calls()
    connector.write_history_many([item(created[3], 3, "ann@client.example")])
    assert hubspot_calls() - before == 5, "no run: the call reads for itself"


def test_date_versioned_paths(sandbox: Sandbox) -> None:
    connector = HubSpotConnector(
        sandbox.token("hubspot"),
        base_url=sandbox.url("hubspot"),
        ca_path=sandbox.ca_path,
        api_version="2026-03",
    )
    try:
        created = connector.create(meeting(invitees=()))
        assert created.crm_record_id
        assert sandbox.calls.count("hubspot", endpoint="/crm/objects/{version}/*") >= 2
    finally:
        connector.close()


def test_record_types_and_check(connector: HubSpotConnector, sandbox: Sandbox) -> None:
    assert [t.id for t in connector.record_types()] == ["Discovery", "Demo", "Follow-up"]
    assert all(c.ok for c in connector.check())
    emulator(sandbox).drop_property("meetings", "crm_meetings_uid")
    failed = [c for c in connector.check() if not c.ok]
    assert [c.name for c in failed] == ["hubspot meetings properties"]
    assert "crm_meetings_uid" in failed[0].fix


def test_a_full_read_past_the_search_ceiling_restarts_above_the_last_id(
    connector: HubSpotConnector, sandbox: Sandbox
) -> None:
    """HubSpot's search stops at 10,000 results per query; the connector restarts the query
    with ``hs_object_id > last id`` before reaching it. Here the ceiling is 500 on both
    sides, so reading 1,206 meetings takes three queries."""
    emulator(sandbox).search_cap = 500
    connector.search_cap = 500
    made = connector.create_many([meeting(invitees=()) for _ in range(1200)])
    assert all(r.ok for r in made)
    searches_before = sandbox.calls.count("hubspot", endpoint="*/search", method="POST")
    pages = list(connector.changed_since(None))
    seen = [m.crm_record_id for page in pages for m in page.meetings]
    assert len(seen) == len(set(seen)) == 1206, "every meeting once, none twice"
    assert {r.record_id for r in made} <= set(seen)
    refused = sandbox.calls.count("hubspot", endpoint="*/search", status=400)
    assert refused == 0, "no page ever asked past the ceiling"
    searches = sandbox.calls.count("hubspot", endpoint="*/search", method="POST")
    # a restart replaces the next page's request, so no call is spent on it: reading all
    # 1,206 past a 500-result ceiling is only possible through the restarts
    assert searches - searches_before == math.ceil(1206 / 200)
