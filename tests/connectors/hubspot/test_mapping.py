"""Pure mapping: recordings from HubSpot's reference parse into the model, and back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from crm_meetings.connectors.base import HistoryItem
from crm_meetings.connectors.hubspot.mapping import (
    Associations,
    Contact,
    association_inputs,
    batch_errors,
    error_from_hubspot,
    history_meeting_properties,
    hubspot_properties,
    invitee_contacts,
    meeting_from_hubspot,
    session_properties,
)
from crm_meetings.errors import RateLimitedError, ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    MeetingStatus,
    Participant,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
    new_meeting,
)

Load = Callable[[str], dict[str, Any]]
START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def test_documented_meeting_parses(recording: Load) -> None:
    body = recording("meeting_create_with_associations.json")["response"]["body"]
    contacts = (Contact("101", "ann@client.example", "Ann Client"),)
    meeting = meeting_from_hubspot(
        body,
        Associations(contacts, (RecordRef("Company", "7"),)),
        owners={"11349275740": "rep@sales.example.com"},
    )
    assert meeting.crm_record_id == "512"
    assert meeting.subject == "Intro meeting"
    assert meeting.start == datetime(2021, 3, 23, 1, 2, 44, 872000, tzinfo=UTC)
    assert meeting.end == datetime(2021, 3, 23, 1, 52, 44, 872000, tzinfo=UTC)
    assert (meeting.description, meeting.notes) == (
        "The first meeting to discuss options",
        "These are the meeting notes",
    )
    assert (meeting.location, meeting.join_url) == ("Remote", "https://Zoom.com/0000")
    assert meeting.organizer == Person("rep@sales.example.com")
    assert meeting.invitees == (
        Invitee("ann@client.example", "Ann Client", crm_relation=RecordRef("Contact", "101")),
    )
    assert meeting.related == (RecordRef("Company", "7"),)
    assert (meeting.id, meeting.uid) == ("hubspot-512", "hubspot-512@crm-meetings")
    assert meeting.status is MeetingStatus.SCHEDULED


def _meeting(**fields: Any) -> Any:
    values: dict[str, Any] = {
        "crm": CrmKind.HUBSPOT,
        "subject": "Intro meeting",
        "start": START,
        "end": START.replace(hour=16),
        "timezone": "Europe/Paris",
        "organizer": Person("rep@sales.example.com"),
        "now": START,
        "id_factory": lambda: "m1",
        "description": "The first meeting to discuss options",
        "location": "Remote",
        "join_url": "https://Zoom.com/0000",
        "invitees": (Invitee("ann@client.example", "Ann", ResponseStatus.ACCEPTED),),
        "related": (RecordRef("Company", "7"), RecordRef("Deal", "9")),
    }
    values.update(fields)
    return new_meeting(**values)


def test_properties_match_the_documented_request(recording: Load) -> None:
    documented = recording("meeting_create_with_associations.json")["request"]["body"]
    ours = hubspot_properties(_meeting(), owner_id="11349275740", contact_ids={})
    for name in ("hs_meeting_title", "hs_meeting_body", "hs_meeting_location",
                 "hs_meeting_external_url", "hs_meeting_outcome", "hubspot_owner_id"):  # fmt: skip
        assert name in documented["properties"]
        assert ours[name] == documented["properties"][name]
    assert ours["hs_timestamp"] == ours["hs_meeting_start_time"] == "2026-12-01T15:00:00.000Z"
    links = association_inputs(["101"], [])
    assert links[0]["types"] == documented["associations"][0]["types"]


def test_round_trip_keeps_identity_and_invitee_answers() -> None:
    meeting = _meeting()
    props = hubspot_properties(meeting, contact_ids={"ann@client.example": "101"})
    back = meeting_from_hubspot(
        {"id": "55", "properties": props},
        Associations(tuple(invitee_contacts(props).values()), meeting.related),
    )
    assert (back.id, back.uid, back.subject, back.start, back.end) == (
        meeting.id, meeting.uid, meeting.subject, meeting.start, meeting.end,
    )  # fmt: skip
    assert back.invitees[0].response is ResponseStatus.ACCEPTED
    assert back.related == meeting.related


def test_update_writes_only_the_changed_fields() -> None:
    props = hubspot_properties(_meeting(), ["subject", "start"])
    assert set(props) == {"hs_meeting_title", "hs_meeting_start_time", "hs_timestamp"}
    cancelled = hubspot_properties(_meeting(status=MeetingStatus.CANCELLED), ["status"])
    assert cancelled == {"hs_meeting_outcome": "CANCELED"}


def test_association_type_ids_per_object() -> None:
    inputs = association_inputs(["101"], [RecordRef("Company", "7"), RecordRef("Deal", "9"),
                                          RecordRef("Ticket", "4")])  # fmt: skip
    assert [i["types"][0]["associationTypeId"] for i in inputs] == [200, 188, 212, 216]
    with pytest.raises(ValidationError, match="related"):
        association_inputs([], [RecordRef("Opportunity", "1")])


def test_multi_status_errors_are_keyed_by_trace_id_and_name_the_property(recording: Load) -> None:
    body = recording("batch_create_multi_status.json")["response"]["body"]
    errors = batch_errors(body)
    assert set(errors) == {"549b1c2a9351"}
    error = errors["549b1c2a9351"]
    assert isinstance(error, ValidationError)
    assert error.field == "missing"


def test_documented_validation_error_names_the_property(recording: Load) -> None:
    response = recording("error_validation.json")["response"]
    error = error_from_hubspot(response["status"], response["body"])
    assert isinstance(error, ValidationError)
    assert error.field == "discount"


def test_rate_limit_waits_for_the_window(recording: Load) -> None:
    response = recording("rate_limited_ten_secondly.json")["response"]
    error = error_from_hubspot(429, response["body"], response["headers"])
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 10.0
    assert error.vendor_code == "RATE_LIMIT"
    with_header = error_from_hubspot(429, response["body"], {"Retry-After": "2"})
    assert isinstance(with_header, RateLimitedError)
    assert with_header.retry_after == 2.0


def test_history_properties() -> None:
    meeting = _meeting(crm_record_id="55")
    join = START.replace(minute=1)
    session = Session(
        "zoom", "s-1", "81", START, START.replace(minute=40),
        (Participant("Ann", join, join.replace(minute=31), "ann@client.example"),),
    )  # fmt: skip
    assert history_meeting_properties(HistoryItem(meeting, (session,))) == {
        "hs_meeting_outcome": "COMPLETED",
        "crm_meetings_actual_start": "2026-12-01T15:00:00.000Z",
        "crm_meetings_actual_end": "2026-12-01T15:40:00.000Z",
        "crm_meetings_session_count": "1",
    }
    props = session_properties(session, "55")
    assert props["crm_meetings_duration_minutes"] == "40"
    assert '"minutes":30' in props["crm_meetings_participants"]
