"""Pure Events ⇄ Meeting mapping, on recorded payloads and round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_meetings.connectors.zoho.mapping import (
    history_hash,
    meeting_from_zoho,
    module_of,
    session_record,
    zoho_changes,
    zoho_record,
)
from crm_meetings.errors import ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Participant,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
    new_meeting,
)

from .conftest import recording

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def meeting(**fields: Any) -> Any:
    values: dict[str, Any] = {
        "crm": CrmKind.ZOHO,
        "subject": "Pricing review",
        "start": T0,
        "end": T0 + timedelta(minutes=45),
        "timezone": "Europe/Paris",
        "organizer": Person("rep@sales.example.com", "Rep"),
        "now": T0 - timedelta(days=1),
        "id_factory": lambda: "m1",
        "invitees": (
            Invitee("ann@client.example", "Ann"),
            Invitee("lee@client.example", "Lee", crm_relation=RecordRef("Contact", "42")),
        ),
        "related": (RecordRef("Account", "1001"), RecordRef("Contacts", "42")),
        "description": "Agenda",
        "location": "Online",
        "join_url": "https://zoom.example/j/1",
        "provider": "zoom",
        "provider_meeting_id": "81234567890",
    }
    values.update(fields)
    return new_meeting(**values)


def stored(record: dict[str, Any], record_id: str = "5725767000000524157") -> dict[str, Any]:
    """What GET returns for ``record`` once Zoho stored it (lookups and owner filled in)."""
    out = dict(record, id=record_id, Modified_Time="2026-11-30T10:00:00+01:00")
    out["Owner"] = {"name": "Rep", "id": "5725767000000411001", "email": "rep@sales.example.com"}
    out["Participants"] = [
        {
            **p,
            "Email": p["participant"] if p["type"] == "email" else "lee@client.example",
            "name": p.get("name", "Lee"),
            "status": "not_known",
        }
        for p in record["Participants"]
    ]
    return out


def test_round_trip_keeps_every_mapped_field() -> None:
    original = meeting()
    body = zoho_record(original)
    assert body["Start_DateTime"] == "2026-12-01T16:00:00+01:00"  # the organizer's offset
    assert body["What_Id"] == {"id": "1001"}
    assert body["$se_module"] == "Accounts"
    assert body["Participants"] == [
        {"type": "email", "participant": "ann@client.example", "name": "Ann"},
        {"type": "contact", "participant": "42"},
    ]
    back = meeting_from_zoho(stored(body))
    for name in (
        "id",
        "uid",
        "subject",
        "start",
        "end",
        "timezone",
        "description",
        "location",
        "join_url",
        "provider",
        "provider_meeting_id",
        "sequence",
        "status",
    ):
        assert getattr(back, name) == getattr(original, name), name
    assert back.related == (RecordRef("Accounts", "1001"), RecordRef("Contacts", "42"))
    assert [i.email for i in back.invitees] == ["ann@client.example", "lee@client.example"]
    assert back.invitees[1].crm_relation == RecordRef("Contacts", "42")
    assert back.crm_record_id == "5725767000000524157"


def test_recorded_participants_parse() -> None:
    (record,) = recording("event_participants.json")["response"]["body"]["data"]
    record = {
        **record,
        "id": "4150868000002792000",
        "Event_Title": "Call",
        "Start_DateTime": "2026-12-01T10:00:00+05:30",
        "End_DateTime": "2026-12-01T10:30:00+05:30",
    }
    parsed = meeting_from_zoho(record)
    assert parsed.organizer == Person("patricia.b@zohocorp.com", "Patricia Boyle")
    (invitee,) = parsed.invitees
    assert invitee.email == "abc.123@xyz.com"
    assert invitee.response is ResponseStatus.NEEDS_ACTION
    assert invitee.crm_relation == RecordRef("Leads", "4150868000002748005")
    assert parsed.id == "zoho-4150868000002792000"  # made in Zoho: a derived identity


def test_changes_carry_only_the_changed_fields() -> None:
    original = meeting(crm_record_id="5725767000000524157")
    moved, change = original.revise(
        start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1)
    )
    body = zoho_changes(moved, change)
    assert set(body) == {"id", "Start_DateTime", "End_DateTime", "CRM_Meetings_Sequence"}
    assert body["CRM_Meetings_Sequence"] == 1


def test_two_accounts_are_refused_naming_related() -> None:
    with pytest.raises(ValidationError) as info:
        zoho_record(meeting(related=(RecordRef("Account", "1"), RecordRef("Deal", "2"))))
    assert info.value.field == "related"


def test_owner_without_email_is_a_validation_error() -> None:
    body = stored(zoho_record(meeting()))
    body["Owner"] = {"name": "Ghost", "id": "1"}
    with pytest.raises(ValidationError, match="Owner"):
        meeting_from_zoho(body)


def test_module_aliases() -> None:
    assert module_of(RecordRef("Opportunity", "1")) == "Deals"
    assert module_of(RecordRef("Deals", "1")) == "Deals"


def test_session_record_and_hash() -> None:
    join = T0 + timedelta(minutes=1)
    session = Session(
        "zoom",
        "uuid==",
        "812",
        T0,
        T0 + timedelta(minutes=30),
        (Participant("Ann", join, join + timedelta(minutes=20), "ann@client.example"),),
    )
    record = session_record("99", session)
    assert record["Provider_Session_Id"] == "uuid=="
    assert record["Duration_Minutes"] == 30
    assert record["Session_Participants"][0]["Minutes_Attended"] == 20
    assert record["History_Hash"] == history_hash("99", session)
    assert history_hash("100", session) != record["History_Hash"]
