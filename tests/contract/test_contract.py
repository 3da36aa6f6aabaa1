"""The contract every CRM connector passes, through its real SDK, against the sandbox.

Each CRM contributes one ``harness_<vendor>.py`` beside this file, exposing:

- ``VENDOR``: the sandbox vendor name;
- ``make_connector(sandbox) -> Connector``: the connector, talking HTTPS to the sandbox;
- ``related_record(sandbox) -> RecordRef``: a seeded record meetings can relate to;
- ``logged_emails(sandbox) -> list[(subject, record id)]``: the e-mails logged, and where.

A new connector passes by implementing the protocol and adding its harness.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crm_meetings.connectors.base import Connector, HistoryItem, HistoryRun, SentEmail
from crm_meetings.errors import NotFoundError, RemoteError
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
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module

HERE = Path(__file__).parent
START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
CRM_OF = {"salesforce": CrmKind.SALESFORCE, "hubspot": CrmKind.HUBSPOT, "zoho": CrmKind.ZOHO}


HARNESSES = {m.VENDOR: m for m in map(load_module, sorted(HERE.glob("harness_*.py")))}


def test_every_crm_has_a_harness() -> None:
    assert set(HARNESSES) == set(CRM_OF), "each CRM must run the contract suite"


class Rig:
    """One connector on a fresh sandbox, plus helpers to build meetings for it."""

    def __init__(self, harness: ModuleType, sandbox: Sandbox) -> None:
        self.harness = harness
        self.vendor: str = harness.VENDOR
        self.sandbox = sandbox
        self.connector: Connector = harness.make_connector(sandbox)
        self.record: RecordRef = harness.related_record(sandbox)
        self._ids = count()

    def meeting(self, **fields: Any) -> Meeting:
        n = next(self._ids)
        values: dict[str, Any] = {
            "crm": CRM_OF[self.vendor],
            "subject": f"Contract meeting {n}",
            "start": START + timedelta(hours=n),
            "end": START + timedelta(hours=n, minutes=30),
            "timezone": "Europe/Paris",
            "organizer": Person("rep0@sales.example.com", "Rep Zero"),
            "now": START - timedelta(days=1),
            "id_factory": lambda: f"contract-{self.vendor}-{n}",
            "invitees": (Invitee("ann@client.example", "Ann Client"),),
            "related": (self.record,),
            "description": "Agenda: pricing",
            "location": "Online",
        }
        values.update(fields)
        return new_meeting(**values)

    def calls(self) -> int:
        """Requests the sandbox answered for this vendor (the CRM's view of our budget)."""
        return self.sandbox.calls.count(self.vendor)


@pytest.fixture(params=sorted(HARNESSES))
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    harness = HARNESSES[request.param]
    sandbox = Sandbox([harness.VENDOR], seed=SeedSpec(seed=7, meetings=4, records=3))
    sandbox.start()
    rig = None
    try:
        rig = Rig(harness, sandbox)
        yield rig
    finally:
        if rig is not None:
            rig.connector.close()  # an idle keep-alive connection would hold up shutdown
        sandbox.stop()


def test_life_cycle(rig: Rig) -> None:
    connector = rig.connector
    created = connector.create(rig.meeting())
    assert created.crm_record_id
    record_id = created.crm_record_id

    fetched = connector.get(record_id)
    assert fetched.subject == created.subject
    assert (fetched.start, fetched.end) == (created.start, created.end)
    assert [i.email for i in fetched.invitees] == ["ann@client.example"]

    moved, change = created.revise(
        subject="Moved meeting",
        start=created.start + timedelta(days=1),
        end=created.end + timedelta(days=1),
    )
    connector.update(moved, change)
    again = connector.get(record_id)
    assert again.subject == "Moved meeting"
    assert again.start == moved.start

    related = {m.crm_record_id for m in connector.list_for_record(rig.record)}
    assert record_id in related

    pages = list(connector.changed_since(None))
    assert record_id in {m.crm_record_id for page in pages for m in page.meetings}
    cursor = pages[-1].cursor if pages[-1].cursor is not None else _last_cursor(pages)

    connector.delete(record_id)
    connector.delete(record_id)  # deleting twice is harmless
    with pytest.raises(NotFoundError):
        connector.get(record_id)

    later = list(connector.changed_since(cursor))
    assert record_id in {d for page in later for d in page.deleted}


def test_find_by_uid_reads_our_meeting_back_until_it_is_deleted(rig: Rig) -> None:
    """The lookup a retried create relies on: found at once (no related record needed),
    ``None`` for a UID the CRM never saw and for a deleted record."""
    connector = rig.connector
    created = connector.create(rig.meeting(related=()))
    assert connector.find_by_uid("never-made@crm-meetings") is None
    found = connector.find_by_uid(created.uid)
    assert found is not None
    assert (found.crm_record_id, found.id, found.uid) == (
        created.crm_record_id,
        created.id,
        created.uid,
    )
    assert found.subject == created.subject
    assert created.crm_record_id is not None
    connector.delete(created.crm_record_id)
    assert connector.find_by_uid(created.uid) is None


def _last_cursor(pages: list[Any]) -> str | None:
    cursors = [p.cursor for p in pages if p.cursor is not None]
    return cursors[-1] if cursors else None


@pytest.mark.parametrize("size", [1, "limit", "limit+1", 1000])
def test_batch_create_uses_the_fewest_calls(rig: Rig, size: int | str) -> None:
    limit = rig.connector.batch_limit
    n = {"limit": limit, "limit+1": limit + 1}.get(str(size), size)
    assert isinstance(n, int)
    meetings = [rig.meeting(invitees=()) for _ in range(n)]
    before = rig.calls()
    results = rig.connector.create_many(meetings)
    made = rig.calls() - before
    assert [r.key for r in results] == [m.id for m in meetings]
    assert all(r.ok and r.record_id for r in results)
    assert made == math.ceil(n / limit), f"{made} calls for {n} records (limit {limit})"


def test_partial_batch_failure_is_reported_per_record(rig: Rig) -> None:
    good, bad = rig.meeting(invitees=()), rig.meeting(invitees=())
    rig.sandbox.emulator(rig.vendor).reject_subject = bad.subject  # type: ignore[attr-defined]
    results = rig.connector.create_many([good, bad])
    assert [r.ok for r in results] == [True, False]
    error = results[1].error
    assert error is not None
    assert "subject" in str(error).lower() or "title" in str(error).lower()


def test_expired_token_is_refreshed_once(rig: Rig) -> None:
    created = rig.connector.create(rig.meeting())
    assert created.crm_record_id
    rig.sandbox.env.tokens.expire(rig.vendor)
    assert rig.connector.get(created.crm_record_id).subject == created.subject


def test_rate_limit_waits_for_retry_after(rig: Rig) -> None:
    created = rig.connector.create(rig.meeting())
    assert created.crm_record_id
    rig.sandbox.faults.set(
        rig.vendor, FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED, retry_after=0.05)
    )
    before = rig.calls()
    assert rig.connector.get(created.crm_record_id).crm_record_id == created.crm_record_id
    assert rig.calls() - before == 2


def test_persistent_server_errors_end_in_a_clear_error(rig: Rig) -> None:
    created = rig.connector.create(rig.meeting())
    assert created.crm_record_id
    rig.sandbox.faults.set(rig.vendor, FaultPlan(server_error=1.0))
    before = rig.calls()
    with pytest.raises(RemoteError) as info:
        rig.connector.get(created.crm_record_id)
    assert info.value.vendor == rig.vendor
    assert info.value.status is not None
    assert info.value.status >= 500
    assert 1 < rig.calls() - before <= 10, "retries are bounded"


def _history_item(rig: Rig) -> HistoryItem:
    created = rig.connector.create(rig.meeting())
    join = created.start + timedelta(minutes=1)
    session = Session(
        "zoom",
        f"contract-session-{rig.vendor}",
        "81234567890",
        created.start,
        created.end,
        (Participant("Ann Client", join, join + timedelta(minutes=20), "ann@client.example"),),
    )
    return HistoryItem(created, (session,))


def test_history_upserts_are_idempotent(rig: Rig) -> None:
    item = _history_item(rig)
    first = rig.connector.write_history_many([item])
    assert [r.ok for r in first] == [True]
    state_after_first = _history_state(rig)
    second = rig.connector.write_history_many([item])
    assert [r.ok for r in second] == [True]
    assert _history_state(rig) == state_after_first


def test_history_replayed_in_a_sync_run_duplicates_nothing(rig: Rig) -> None:
    """A sync run has compared its sessions with the store (``checked``), so a connector
    may upsert without reading first; replayed (the CRM accepted, the store did not
    commit), the upsert by session id meets the same records and adds none."""
    item = _history_item(rig)
    first = rig.connector.write_history_many([item], run=HistoryRun(checked=True))
    assert [r.ok for r in first] == [True]
    sizes = {k: len(v) for k, v in _history_state(rig).items()}
    again = rig.connector.write_history_many([item], run=HistoryRun(checked=True))
    assert [r.record_id for r in again] == [r.record_id for r in first]
    assert {k: len(v) for k, v in _history_state(rig).items()} == sizes


def _history_state(rig: Rig) -> Any:
    state = rig.sandbox.emulator(rig.vendor).state()
    return {k: v for k, v in state.items() if "history" in k or "session" in k.lower()}


def test_record_types_and_check(rig: Rig) -> None:
    assert isinstance(rig.connector.record_types(), list)
    checks = rig.connector.check()
    assert checks, "doctor needs at least one check"
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def _sent(meeting: Meeting, n: int, **fields: Any) -> SentEmail:
    values: dict[str, Any] = {
        "key": f"mail-key-{n}",
        "message_id": f"<imip.{n}@acme.example>",
        "meeting": meeting,
        "sender": Person("sales@acme.example", "Acme Sales"),
        "recipients": ("ann@client.example",),
        "subject": f"Invitation: {meeting.subject} #{n}",
        "text": "Rep Zero invited you to a meeting.",
        "html": "<p>Rep Zero invited you to a meeting.</p>",
        "sent_at": START - timedelta(hours=1),
    }
    values.update(fields)
    return SentEmail(**values)


def test_sent_emails_are_logged_once_on_the_meetings_record(rig: Rig) -> None:
    created = rig.connector.create(rig.meeting())
    emails = [_sent(created, n) for n in range(3)]
    results = rig.connector.log_emails(emails)
    assert [r.key for r in results] == [e.key for e in emails]
    assert all(r.ok for r in results), [r.error for r in results]
    expected = sorted((e.subject, rig.record.record_id) for e in emails)
    assert rig.harness.logged_emails(rig.sandbox) == expected

    # after a crash the same e-mails come again, flagged: nothing is logged twice
    replay = [dataclasses.replace(e, maybe_logged=True) for e in emails]
    assert all(r.ok for r in rig.connector.log_emails(replay))
    # ... and unflagged (the answer was lost): the CRM's unique key, where it has one
    if rig.vendor != "zoho":  # Zoho notes have no unique field: only a flagged replay is safe
        assert all(r.ok for r in rig.connector.log_emails(emails))
    assert rig.harness.logged_emails(rig.sandbox) == expected


@pytest.mark.parametrize("size", [1, "limit+1"])
def test_logging_emails_uses_the_fewest_calls(rig: Rig, size: int | str) -> None:
    created = rig.connector.create(rig.meeting(invitees=()))
    limit = rig.connector.batch_limit
    n = limit + 1 if size == "limit+1" else 1
    emails = [_sent(created, i, recipients=("bob@client.example",)) for i in range(n)]
    before = rig.calls()
    results = rig.connector.log_emails(emails)
    made = rig.calls() - before
    assert all(r.ok for r in results)
    assert len(rig.harness.logged_emails(rig.sandbox)) == n
    assert made == math.ceil(n / limit), f"{made} calls for {n} e-mails (limit {limit})"


def test_an_email_the_crm_refuses_is_reported_per_email(rig: Rig) -> None:
    created = rig.connector.create(rig.meeting())
    gone = dataclasses.replace(created, related=(RecordRef(rig.record.object_type, "999"),))
    if rig.vendor == "salesforce":
        gone = dataclasses.replace(created, related=(RecordRef("Account", "001000000000999AAA"),))
    results = rig.connector.log_emails([_sent(created, 1), _sent(gone, 2)])
    assert [r.ok for r in results] == [True, False]
    assert results[1].error is not None
