"""Pure Salesforce mapping and error translation, on the recorded payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crm_meetings.connectors.base import BatchResult
from crm_meetings.connectors.salesforce.connector import SalesforceConnector, endpoint_of
from crm_meetings.connectors.salesforce.errors import record_error
from crm_meetings.connectors.salesforce.mapping import event_from_meeting, meeting_from_event
from crm_meetings.errors import ValidationError
from crm_meetings.model import CrmKind, Invitee, Person, RecordRef, ResponseStatus, new_meeting

RECORDINGS = Path(__file__).parents[2] / "recordings" / "salesforce"


def recording(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return loaded


def test_a_foreign_event_reads_with_a_derived_identity() -> None:
    row = recording("event_row")["response"]["body"]["records"][0]
    meeting = meeting_from_event(row)
    assert (meeting.id, meeting.uid) == (
        "salesforce-00U5g00000AbCdEEAV",
        "salesforce-00U5g00000AbCdEEAV@crm-meetings",
    )
    assert meeting.start == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert meeting.organizer == Person("rep0@sales.example.com", "Ada Lovelace")
    assert meeting.related == (
        RecordRef("Account", "0015g00000AsDfGAAR"),
        RecordRef("Contact", "0035g00000QwErTAAR"),
    )
    assert meeting.crm_modified_at == datetime(2026, 11, 21, 10, 15, tzinfo=UTC)


def test_a_meeting_round_trips_through_its_event_row() -> None:
    contact = RecordRef("Contact", "0035g00000QwErTAAR")
    meeting = new_meeting(
        crm=CrmKind.SALESFORCE,
        subject="Pricing review",
        start=datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
        end=datetime(2026, 12, 1, 15, 30, tzinfo=UTC),
        timezone="Europe/Paris",
        organizer=Person("rep0@sales.example.com", "Ada Lovelace"),
        now=datetime(2026, 11, 1, tzinfo=UTC),
        id_factory=lambda: "m-1",
        invitees=(Invitee("ann@client.example", "Ann", crm_relation=contact),),
        related=(RecordRef("Account", "0015g00000AsDfGAAR"), contact),
        join_url="https://zoom.example.com/j/1",
    )
    row = event_from_meeting(meeting)
    assert row["StartDateTime"] == "2026-12-01T15:00:00.000+0000"
    assert (row["WhatId"], row["WhoId"], row["Meeting_Id__c"]) == (
        "0015g00000AsDfGAAR",
        "0035g00000QwErTAAR",
        "m-1",
    )
    relations = {"records": [{"RelationId": contact.record_id, "Status": "Accepted"}]}
    back = meeting_from_event(
        {**row, "Id": "00U5g00000AbCdEEAV", "EventRelations": relations, "CreatedDate": None}
    )
    assert (back.id, back.uid, back.subject, back.timezone) == (
        meeting.id,
        meeting.uid,
        meeting.subject,
        meeting.timezone,
    )
    assert back.invitees[0].response is ResponseStatus.ACCEPTED
    assert back.organizer == meeting.organizer


def test_documented_collection_results_become_batch_results() -> None:
    upserted = recording("collections_upsert")["response"]["body"]
    assert [SalesforceConnector._batch_result(str(n), r) for n, r in enumerate(upserted)] == [
        BatchResult("0", True, "001xx0000004GxDAAU"),
        BatchResult("1", True, "001xx0000004GxEAAU"),
    ]
    failed = recording("collections_create_all_or_none")["response"]["body"][1]
    error = record_error(failed["errors"])
    assert isinstance(error, ValidationError)
    assert error.field == "Email"
    assert "INVALID_EMAIL_ADDRESS" in str(error)


def test_endpoints_are_templates() -> None:
    assert endpoint_of("https://x/services/data/v62.0/sobjects/Event/00U5g00000AbCdEEAV") == (
        "sobjects/Event/{id}"
    )
    assert endpoint_of("https://x/services/data/v62.0/query/01gRO0000016PIAYA2-500") == (
        "query/{id}"
    )
    assert endpoint_of("https://x/services/oauth2/token") == "oauth2/token"
    assert (
        endpoint_of(
            "https://x/services/data/v62.0/composite/sobjects/CRM_Meeting_Session__c/Provider_Session_Id__c"
        )
        == "composite/sobjects/CRM_Meeting_Session__c/Provider_Session_Id__c"
    )
