"""Pure mapping between Salesforce rows and the shared model (no I/O).

``meeting_from_event`` reads an Event row as SOQL returns it (``EVENT_SELECT``: the Event
fields, ``Owner.Email``/``Owner.Name`` and the ``EventRelations`` subquery);
``event_from_meeting`` builds the row crm-meetings writes. History rows are built by
``session_row`` / ``participant_row``, keyed by external ids so a replay updates in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from crm_meetings.connectors.base import SentEmail, derived_identity
from crm_meetings.errors import ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingChange,
    MeetingStatus,
    Participant,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
)

__all__ = [
    "EMAIL_MESSAGE",
    "EVENT",
    "EVENT_SELECT",
    "MAIL_KEY",
    "MEETING_ID",
    "PARTICIPANT",
    "PARTICIPANT_KEY",
    "SESSION",
    "SESSION_KEY",
    "attendance_key",
    "chunked",
    "collection",
    "email_message_row",
    "email_relation_rows",
    "event_changes",
    "event_from_meeting",
    "meeting_from_event",
    "model_field",
    "parse_datetime",
    "participant_row",
    "relation_rows",
    "session_key",
    "session_row",
    "sf_datetime",
    "soql_literal",
]

EVENT: Final = "Event"
MEETING_ID: Final = "Meeting_Id__c"  # external id on Event: our meeting id (safe retries)
MEETING_UID: Final = "Meeting_UID__c"  # the meeting's iCalendar UID
SESSION: Final = "CRM_Meeting_Session__c"
SESSION_KEY: Final = "Provider_Session_Id__c"
PARTICIPANT: Final = "CRM_Meeting_Participant__c"
PARTICIPANT_KEY: Final = "Attendance_Key__c"
EMAIL_MESSAGE: Final = "EmailMessage"
MAIL_KEY: Final = "Mail_Key__c"  # external id on EmailMessage (unique): the message's key
SENT: Final = "3"  # EmailMessage.Status: 0 New, 1 Read, 2 Replied, 3 Sent, 4 Forwarded, 5 Draft

#: custom fields the setup step adds, per object (``doctor`` checks them)
CUSTOM_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    EVENT: (
        MEETING_ID,
        MEETING_UID,
        "Meeting_Sequence__c",
        "Meeting_Status__c",
        "Meeting_Timezone__c",
        "Organizer__c",
        "Join_URL__c",
        "Provider__c",
        "Provider_Meeting_Id__c",
        "Invitees__c",
    ),
    SESSION: (
        SESSION_KEY,
        "Provider__c",
        "Provider_Meeting_Id__c",
        "Event_Id__c",
        "Start__c",
        "End__c",
        "Duration_Minutes__c",
    ),
    PARTICIPANT: (PARTICIPANT_KEY, "Session__c", "Email__c", "Join__c", "Leave__c", "Minutes__c"),
    EMAIL_MESSAGE: (MAIL_KEY,),
}

_STANDARD: Final = (
    "Id",
    "Subject",
    "StartDateTime",
    "EndDateTime",
    "IsAllDayEvent",
    "Location",
    "Description",
    "OwnerId",
    "WhoId",
    "WhatId",
    "RecordTypeId",
    "CreatedDate",
    "LastModifiedDate",
    "SystemModstamp",
)
EVENT_SELECT: Final = ", ".join(
    (
        *_STANDARD,
        *CUSTOM_FIELDS[EVENT],
        "Owner.Email",
        "Owner.Name",
        "(SELECT Id, RelationId, Status FROM EventRelations WHERE IsInvitee = true)",
    )
)

_WHAT: Final = {"001": "Account", "006": "Opportunity"}
_WHO: Final = {"003": "Contact", "00Q": "Lead"}
_INVITABLE: Final = {"Contact", "Lead", "User"}
_STATUS_IN: Final = {"Accepted": ResponseStatus.ACCEPTED, "Declined": ResponseStatus.DECLINED}
_STATUS_OUT: Final = {ResponseStatus.ACCEPTED: "Accepted", ResponseStatus.DECLINED: "Declined"}

#: model field -> the Event fields that carry it
_CARRIERS: Final[dict[str, tuple[str, ...]]] = {
    "subject": ("Subject",),
    "start": ("StartDateTime", "EndDateTime"),
    "end": ("EndDateTime", "StartDateTime"),
    "location": ("Location",),
    "description": ("Description",),
    "related": ("WhatId", "WhoId"),
    "record_type": ("RecordTypeId",),
    "organizer": ("Organizer__c", "OwnerId"),
    "invitees": ("Invitees__c",),
    "status": ("Meeting_Status__c",),
    "sequence": ("Meeting_Sequence__c",),
    "timezone": ("Meeting_Timezone__c",),
    "join_url": ("Join_URL__c",),
    "provider": ("Provider__c",),
    "provider_meeting_id": ("Provider_Meeting_Id__c",),
    "uid": ("Meeting_UID__c",),
    "id": (MEETING_ID,),
}
_MODEL_FIELD: Final = {sf: model for model, fields in _CARRIERS.items() for sf in fields[:1]}

T = TypeVar("T")


def model_field(sf_field: str) -> str:
    """The model's name for a Salesforce field (``Subject`` -> ``subject``), else itself."""
    return _MODEL_FIELD.get(sf_field, sf_field)


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sf_datetime(value: datetime) -> str:
    """A datetime as Salesforce writes them: ``2026-12-01T15:00:00.000+0000``."""
    moment = value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def soql_literal(value: str) -> str:
    """A quoted SOQL string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def collection(records: Iterable[Mapping[str, Any]], sobject: str) -> dict[str, Any]:
    """An sObject Collections body; each record typed, ``allOrNone`` off (per-record results)."""
    return {
        "allOrNone": False,
        "records": [{"attributes": {"type": sobject}, **record} for record in records],
    }


# --- Event <-> Meeting ----------------------------------------------------------------


def _ref_of(record_id: str | None, kinds: Mapping[str, str]) -> RecordRef | None:
    if not record_id or record_id[:3] not in kinds:
        return None
    return RecordRef(kinds[record_id[:3]], record_id)


def _invitees(row: Mapping[str, Any]) -> tuple[Invitee, ...]:
    stored = json.loads(row.get("Invitees__c") or "[]")
    relations = row.get("EventRelations") or {}
    answers = {
        r["RelationId"]: _STATUS_IN[r["Status"]]
        for r in relations.get("records", [])
        if r.get("Status") in _STATUS_IN
    }
    invitees = []
    for entry in stored:
        relation = entry.get("relation")
        ref = RecordRef(*relation.split("/", 1)) if relation else None
        response = answers.get(ref.record_id) if ref else None
        invitees.append(
            Invitee(
                email=entry["email"],
                name=entry.get("name", ""),
                response=response or ResponseStatus(entry.get("response", "NEEDS-ACTION")),
                optional=bool(entry.get("optional", False)),
                crm_relation=ref,
            )
        )
    return tuple(invitees)


def _organizer(row: Mapping[str, Any], fallback: Person | None) -> Person:
    if row.get("Organizer__c"):
        return Person.parse(row["Organizer__c"])
    owner = row.get("Owner") or {}
    if owner.get("Email"):
        return Person(owner["Email"], owner.get("Name") or "")
    if fallback is not None:
        return fallback
    raise ValidationError("organizer", f"Event {row.get('Id')} has no owner e-mail")


def meeting_from_event(row: Mapping[str, Any], *, organizer: Person | None = None) -> Meeting:
    """The meeting an Event row (``EVENT_SELECT``) describes.

    Events crm-meetings did not create get a derived id and UID. A zero-length Event
    (Salesforce allows them) becomes a one-minute meeting. ``organizer`` is used when the
    row names neither ``Organizer__c`` nor the owner's e-mail.
    """
    record_id = row["Id"]
    local_id, uid = derived_identity(CrmKind.SALESFORCE, record_id)
    start = parse_datetime(row["StartDateTime"])
    end = parse_datetime(row["EndDateTime"]) if row.get("EndDateTime") else start
    related = tuple(
        ref
        for ref in (_ref_of(row.get("WhatId"), _WHAT), _ref_of(row.get("WhoId"), _WHO))
        if ref is not None
    )
    modified = row.get("SystemModstamp") or row.get("LastModifiedDate")
    return Meeting(
        id=row.get(MEETING_ID) or local_id,
        crm=CrmKind.SALESFORCE,
        crm_record_id=record_id,
        subject=row.get("Subject") or "(no subject)",
        start=start,
        end=max(end, start + timedelta(minutes=1)),
        timezone=row.get("Meeting_Timezone__c") or "UTC",
        organizer=_organizer(row, organizer),
        uid=row.get("Meeting_UID__c") or uid,
        description=row.get("Description") or "",
        location=row.get("Location") or "",
        join_url=row.get("Join_URL__c") or None,
        invitees=_invitees(row),
        related=related,
        record_type=row.get("RecordTypeId"),
        status=MeetingStatus(row.get("Meeting_Status__c") or MeetingStatus.SCHEDULED),
        sequence=int(row.get("Meeting_Sequence__c") or 0),
        provider=row.get("Provider__c"),
        provider_meeting_id=row.get("Provider_Meeting_Id__c"),
        created_at=parse_datetime(row["CreatedDate"]) if row.get("CreatedDate") else None,
        crm_modified_at=parse_datetime(modified) if modified else None,
    )


def _first(refs: Iterable[RecordRef], kinds: Mapping[str, str]) -> str | None:
    return next((r.record_id for r in refs if r.object_type in kinds.values()), None)


def _organizer_text(person: Person) -> str:
    return f"{person.name} <{person.email}>" if person.name else person.email


def event_from_meeting(meeting: Meeting, *, owner_id: str | None = None) -> dict[str, Any]:
    """The Event row for ``meeting`` (without ``Id``); ``owner_id`` sets ``OwnerId``."""
    invitees = [
        {
            "email": i.email,
            "name": i.name,
            "response": i.response.value,
            "optional": i.optional,
            **({"relation": f"{i.crm_relation}"} if i.crm_relation else {}),
        }
        for i in meeting.invitees
    ]
    row: dict[str, Any] = {
        "Subject": meeting.subject,
        "StartDateTime": sf_datetime(meeting.start),
        "EndDateTime": sf_datetime(meeting.end),
        "IsAllDayEvent": False,
        "Location": meeting.location or None,
        "Description": meeting.description or None,
        "WhatId": _first(meeting.related, _WHAT),
        "WhoId": _first(meeting.related, _WHO),
        "RecordTypeId": meeting.record_type,
        "OwnerId": owner_id,
        "Organizer__c": _organizer_text(meeting.organizer),
        MEETING_ID: meeting.id,
        "Meeting_UID__c": meeting.uid,
        "Meeting_Sequence__c": meeting.sequence,
        "Meeting_Status__c": meeting.status.value,
        "Meeting_Timezone__c": meeting.timezone,
        "Join_URL__c": meeting.join_url,
        "Provider__c": meeting.provider,
        "Provider_Meeting_Id__c": meeting.provider_meeting_id,
        "Invitees__c": json.dumps(invitees, ensure_ascii=False, separators=(",", ":")),
    }
    for optional in ("RecordTypeId", "OwnerId"):
        if row[optional] is None:
            del row[optional]
    return row


def event_changes(
    meeting: Meeting, change: MeetingChange, *, owner_id: str | None = None
) -> dict[str, Any]:
    """Only the Event fields ``change`` touches, with ``meeting``'s (new) values."""
    full = event_from_meeting(meeting, owner_id=owner_id)
    wanted = {f for name in change.changed for f in _CARRIERS.get(name, ())}
    out = {name: full.get(name) for name in sorted(wanted)}
    if out.get("OwnerId", "") is None:  # an Event always has an owner: keep the current one
        del out["OwnerId"]
    return out


def relation_rows(event_id: str, meeting: Meeting) -> list[dict[str, Any]]:
    """EventRelation rows for the invitees that are CRM people (Contact, Lead, User)."""
    return [
        {
            "EventId": event_id,
            "RelationId": i.crm_relation.record_id,
            "IsInvitee": True,
            "Status": _STATUS_OUT.get(i.response, "New"),
        }
        for i in meeting.invitees
        if i.crm_relation is not None and i.crm_relation.object_type in _INVITABLE
    ]


# --- logged e-mail ----------------------------------------------------------------------


def email_message_row(email: SentEmail) -> dict[str, Any]:
    """The EmailMessage (Enhanced Email) row logging ``email`` as sent: on the meeting's
    Account or Opportunity (``RelatedToId``), keyed by ``Mail_Key__c``."""
    return {
        "Subject": email.subject[:3000],
        "FromAddress": email.sender.email,
        "FromName": email.sender.name or None,
        "ToAddress": "; ".join(email.recipients)[:4000],
        "TextBody": email.text[:131072],
        "HtmlBody": email.html[:131072] or None,
        "MessageDate": sf_datetime(email.sent_at),
        "MessageIdentifier": email.message_id,
        "Status": SENT,
        "Incoming": False,
        "RelatedToId": _first(email.meeting.related, _WHAT),
        MAIL_KEY: email.key,
    }


def email_relation_rows(message_id: str, email: SentEmail) -> list[dict[str, Any]]:
    """EmailMessageRelation rows (``ToAddress``) for the recipients who are Contacts or
    Leads, and the Contact or Lead the meeting is about: the e-mail shows on their records."""
    wanted = set(email.recipients)
    people = [
        i.crm_relation.record_id
        for i in email.meeting.invitees
        if i.email in wanted and i.crm_relation and i.crm_relation.object_type in _WHO.values()
    ]
    people += [r.record_id for r in email.meeting.related if r.object_type in _WHO.values()]
    return [
        {"EmailMessageId": message_id, "RelationId": person, "RelationType": "ToAddress"}
        for person in dict.fromkeys(people)
    ]


# --- history --------------------------------------------------------------------------


def session_key(session: Session) -> str:
    """The session's external id: provider and provider session id (unique together)."""
    return f"{session.provider}:{session.provider_session_id}"


def session_row(meeting: Meeting, session: Session) -> dict[str, Any]:
    return {
        "Name": f"{meeting.subject} {session.start:%Y-%m-%d %H:%M}"[:80],
        SESSION_KEY: session_key(session),
        "Provider__c": session.provider,
        "Provider_Meeting_Id__c": session.provider_meeting_id,
        "Event_Id__c": meeting.crm_record_id,
        "Start__c": sf_datetime(session.start),
        "End__c": sf_datetime(session.end),
        "Duration_Minutes__c": session.duration_minutes,
    }


def attendance_key(session: Session, participant: Participant) -> str:
    """One attendance's external id: session, join time, and who (hashed if too long)."""
    who = participant.email or participant.name
    key = f"{session_key(session)}|{participant.join_time:%Y%m%dT%H%M%SZ}|{who}"
    return key if len(key) <= 255 else hashlib.sha256(key.encode()).hexdigest()


def participant_row(session_id: str, session: Session, participant: Participant) -> dict[str, Any]:
    return {
        "Name": (participant.name or participant.email or "Participant")[:80],
        PARTICIPANT_KEY: attendance_key(session, participant),
        "Session__c": session_id,
        "Email__c": participant.email,
        "Join__c": sf_datetime(participant.join_time),
        "Leave__c": sf_datetime(participant.leave_time),
        "Minutes__c": participant.minutes_attended,
    }
