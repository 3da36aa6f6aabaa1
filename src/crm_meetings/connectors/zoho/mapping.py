"""Zoho CRM records ⇄ the shared model: pure functions, no I/O.

Meetings are **Events** records (API v8):

==========================  ===============================================================
Meeting                     Events field
==========================  ===============================================================
subject                     ``Event_Title``
start / end                 ``Start_DateTime`` / ``End_DateTime`` (ISO 8601, organizer's
                            offset)
description / location      ``Description`` / ``Venue``
organizer                   ``Owner`` (read; written only when the user id is known)
invitees                    ``Participants``: ``[{type: contact|lead|user|email,
                            participant: <id or address>, name, Email, status}]``
related                     ``What_Id`` + ``$se_module`` (Accounts, Deals, Leads) and
                            ``Who_Id`` (a Contact)
record_type                 ``Layout`` id (Zoho's record types are layouts)
crm_modified_at             ``Modified_Time``
id, uid, sequence, status,  custom fields the setup step adds: ``CRM_Meetings_Id`` (unique),
join_url, provider,         ``CRM_Meetings_UID``, ``CRM_Meetings_Sequence``,
provider_meeting_id,        ``CRM_Meetings_Status``, ``Join_URL``, ``Provider``,
timezone                    ``Provider_Meeting_Id``, ``Time_Zone``
==========================  ===============================================================

An Event without ``CRM_Meetings_Id`` (made in Zoho) gets :func:`derived_identity`.

Where history lands
-------------------
A custom module ``CRM_Meeting_Sessions`` (created by the setup step; ``doctor`` checks it),
one record per provider session, written with ``POST /CRM_Meeting_Sessions/upsert`` and
``duplicate_check_fields: ["Provider_Session_Id"]`` (a unique field), ≤ 100 per call:

``Name`` (provider + session id), ``Provider_Session_Id`` (unique), ``Event_Id`` (the Events
record id: Zoho lookup fields cannot point at activities), ``Provider``,
``Provider_Meeting_Id``, ``Session_Start``, ``Session_End``, ``Duration_Minutes``,
``Participant_Count``, ``History_Hash`` and the subform ``Session_Participants``
(``Attendee_Name``, ``Attendee_Email``, ``Join_Time``, ``Leave_Time``, ``Minutes_Attended``).

Why a module and not the Event's own participants: Events hold invitees, not attendances —
a person may join a session twice, sessions repeat, and people join who were never invited.
Events cannot be upserted (Zoho's upsert excludes activities) while custom modules can, so
session writes are idempotent by construction. ``History_Hash`` (SHA-256 of the session's
canonical content) lets a caller that has not compared the sessions itself read what is
stored and skip unchanged sessions, so a replay writes nothing — not even a new
``Modified_Time``. The sync engine has compared them (its store) and upserts without that
read (``HistoryRun.checked``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from crm_meetings.connectors.base import SentEmail, derived_identity
from crm_meetings.errors import ValidationError
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingChange,
    MeetingStatus,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
)

__all__ = [
    "EVENT_FIELDS",
    "HISTORY_FIELDS",
    "HISTORY_MODULE",
    "MEETINGS_CUSTOM_FIELDS",
    "MODULE_ALIASES",
    "NOTE_PARENTS",
    "history_hash",
    "mail_marker",
    "meeting_from_zoho",
    "module_of",
    "note_parents",
    "note_record",
    "session_record",
    "zoho_changes",
    "zoho_record",
    "zoho_time",
]

HISTORY_MODULE: Final = "CRM_Meeting_Sessions"
NOTE_PARENTS: Final = frozenset({"Accounts", "Contacts", "Deals", "Leads"})
HISTORY_SUBFORM: Final = "Session_Participants"
MEETINGS_CUSTOM_FIELDS: Final = (
    "CRM_Meetings_Id",
    "CRM_Meetings_UID",
    "CRM_Meetings_Sequence",
    "CRM_Meetings_Status",
    "Join_URL",
    "Provider",
    "Provider_Meeting_Id",
    "Time_Zone",
)
EVENT_FIELDS: Final = (
    "Event_Title",
    "Start_DateTime",
    "End_DateTime",
    "Description",
    "Venue",
    "Owner",
    "Participants",
    "What_Id",
    "Who_Id",
    "Layout",
    "Created_Time",
    "Modified_Time",
    *MEETINGS_CUSTOM_FIELDS,
)
HISTORY_FIELDS: Final = (
    "Name",
    "Provider_Session_Id",
    "Event_Id",
    "Provider",
    "Provider_Meeting_Id",
    "Session_Start",
    "Session_End",
    "Duration_Minutes",
    "Participant_Count",
    "History_Hash",
    HISTORY_SUBFORM,
)
#: names other CRMs (and people) use for Zoho's modules
MODULE_ALIASES: Final[Mapping[str, str]] = {
    "Account": "Accounts",
    "Company": "Accounts",
    "Contact": "Contacts",
    "Deal": "Deals",
    "Opportunity": "Deals",
    "Lead": "Leads",
}
_WHAT_MODULES: Final = frozenset({"Accounts", "Deals", "Leads"})
_RESPONSES: Final[Mapping[str, ResponseStatus]] = {
    "accepted": ResponseStatus.ACCEPTED,
    "declined": ResponseStatus.DECLINED,
    "tentative": ResponseStatus.TENTATIVE,
    "maybe": ResponseStatus.TENTATIVE,
}
_PARTICIPANT_MODULES: Final = {"contact": "Contacts", "lead": "Leads", "user": "users"}
# meeting field -> the Events fields that carry it (for partial updates)
_CARRIERS: Final[Mapping[str, tuple[str, ...]]] = {
    "subject": ("Event_Title",),
    "start": ("Start_DateTime", "End_DateTime"),
    "end": ("Start_DateTime", "End_DateTime"),
    "timezone": ("Start_DateTime", "End_DateTime", "Time_Zone"),
    "description": ("Description",),
    "location": ("Venue",),
    "invitees": ("Participants",),
    "related": ("What_Id", "$se_module", "Who_Id"),
    "record_type": ("Layout",),
    "status": ("CRM_Meetings_Status",),
    "sequence": ("CRM_Meetings_Sequence",),
    "join_url": ("Join_URL",),
    "provider": ("Provider",),
    "provider_meeting_id": ("Provider_Meeting_Id",),
    "organizer": ("Owner",),
}


def module_of(ref: RecordRef) -> str:
    """Zoho's module API name for ``ref`` (``Account`` → ``Accounts``)."""
    return MODULE_ALIASES.get(ref.object_type, ref.object_type)


def zoho_time(moment: datetime, zone: str = "UTC") -> str:
    """``2026-12-01T16:00:00+01:00``: Zoho's date-time format, in ``zone``'s offset."""
    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def _time(record: Mapping[str, Any], name: str) -> datetime:
    value = record.get(name)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(name, f"{value!r} is not a Zoho date-time") from None
    if parsed.tzinfo is None:
        raise ValidationError(name, f"{value!r} has no UTC offset")
    return parsed


def _optional_time(record: Mapping[str, Any], name: str) -> datetime | None:
    return _time(record, name) if record.get(name) else None


def _lookup_id(value: object) -> str | None:
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return str(value) if value else None


def _invitee(entry: Mapping[str, Any]) -> Invitee | None:
    kind = str(entry.get("type") or "")
    email = entry.get("Email") or (entry.get("participant") if kind == "email" else None)
    if not email:
        return None  # a contact or lead without an address cannot be invited by mail
    relation = None
    if kind in _PARTICIPANT_MODULES and entry.get("participant"):
        relation = RecordRef(_PARTICIPANT_MODULES[kind], str(entry["participant"]))
    return Invitee(
        email=str(email),
        name=str(entry.get("name") or ""),
        response=_RESPONSES.get(
            str(entry.get("status") or "").lower(), ResponseStatus.NEEDS_ACTION
        ),
        crm_relation=relation,
    )


def meeting_from_zoho(record: Mapping[str, Any]) -> Meeting:
    """The meeting an Events record describes (a GET /Events record)."""
    record_id = str(record["id"])
    local_id, uid = derived_identity(CrmKind.ZOHO, record_id)
    owner = record.get("Owner") or {}
    if not isinstance(owner, Mapping) or not owner.get("email"):
        raise ValidationError("Owner", f"Event {record_id} has no owner e-mail address")
    invitees: list[Invitee] = []
    for entry in record.get("Participants") or ():
        invitee = _invitee(entry)
        if invitee is not None and all(i.email != invitee.email for i in invitees):
            invitees.append(invitee)
    related: list[RecordRef] = []
    what = _lookup_id(record.get("What_Id"))
    if what and record.get("$se_module"):
        related.append(RecordRef(str(record["$se_module"]), what))
    who = _lookup_id(record.get("Who_Id"))
    if who:
        related.append(RecordRef("Contacts", who))
    status = record.get("CRM_Meetings_Status") or MeetingStatus.SCHEDULED.value
    return Meeting(
        id=str(record.get("CRM_Meetings_Id") or local_id),
        crm=CrmKind.ZOHO,
        subject=str(record.get("Event_Title") or ""),
        start=_time(record, "Start_DateTime"),
        end=_time(record, "End_DateTime"),
        timezone=str(record.get("Time_Zone") or "UTC"),
        organizer=Person(str(owner["email"]), str(owner.get("name") or "")),
        uid=str(record.get("CRM_Meetings_UID") or uid),
        crm_record_id=record_id,
        description=str(record.get("Description") or ""),
        location=str(record.get("Venue") or ""),
        join_url=record.get("Join_URL") or None,
        invitees=tuple(invitees),
        related=tuple(related),
        record_type=_lookup_id(record.get("Layout")),
        status=MeetingStatus(status),
        sequence=int(record.get("CRM_Meetings_Sequence") or 0),
        provider=record.get("Provider") or None,
        provider_meeting_id=record.get("Provider_Meeting_Id") or None,
        created_at=_optional_time(record, "Created_Time"),
        crm_modified_at=_optional_time(record, "Modified_Time"),
    )


def _participant(invitee: Invitee) -> dict[str, Any]:
    relation = invitee.crm_relation
    kind = {"Contacts": "contact", "Leads": "lead", "users": "user"}.get(
        module_of(relation) if relation else "", "email"
    )
    target = relation.record_id if relation and kind != "email" else invitee.email
    entry: dict[str, Any] = {"type": kind, "participant": target}
    if kind == "email" and invitee.name:
        entry["name"] = invitee.name
    return entry


def _relations(related: tuple[RecordRef, ...]) -> dict[str, Any]:
    what = [r for r in related if module_of(r) in _WHAT_MODULES]
    who = [r for r in related if module_of(r) == "Contacts"]
    other = [r for r in related if r not in what and r not in who]
    if len(what) > 1 or len(who) > 1 or other:
        raise ValidationError(
            "related",
            "Zoho relates an Event to one Account, Deal or Lead (What_Id) and one Contact "
            f"(Who_Id); got {', '.join(str(r) for r in related)}",
            hint="Keep one Account/Deal/Lead and one Contact; add other people as invitees.",
        )
    return {
        "What_Id": {"id": what[0].record_id} if what else None,
        "$se_module": module_of(what[0]) if what else None,
        "Who_Id": {"id": who[0].record_id} if who else None,
    }


def zoho_record(meeting: Meeting, *, owner_id: str | None = None) -> dict[str, Any]:
    """The Events record body for ``meeting`` (insert; no ``id``).

    ``owner_id`` is the Zoho user id of the organizer, when known; without it Zoho makes
    the API user the owner.
    """
    record: dict[str, Any] = {
        "Event_Title": meeting.subject,
        "Start_DateTime": zoho_time(meeting.start, meeting.timezone),
        "End_DateTime": zoho_time(meeting.end, meeting.timezone),
        "Description": meeting.description or None,
        "Venue": meeting.location or None,
        "Participants": [_participant(i) for i in meeting.invitees],
        **_relations(meeting.related),
        "Layout": {"id": meeting.record_type} if meeting.record_type else None,
        "CRM_Meetings_Id": meeting.id,
        "CRM_Meetings_UID": meeting.uid,
        "CRM_Meetings_Sequence": meeting.sequence,
        "CRM_Meetings_Status": meeting.status.value,
        "Join_URL": meeting.join_url,
        "Provider": meeting.provider,
        "Provider_Meeting_Id": meeting.provider_meeting_id,
        "Time_Zone": meeting.timezone,
    }
    if owner_id:
        record["Owner"] = {"id": owner_id}
    return record


def zoho_changes(
    meeting: Meeting, change: MeetingChange, *, owner_id: str | None = None
) -> dict[str, Any]:
    """The Events fields ``change`` touches, with ``id``: the body of a partial update."""
    if not meeting.crm_record_id:
        raise ValidationError("crm_record_id", "the meeting has no Zoho record yet")
    full = zoho_record(meeting, owner_id=owner_id)
    names = {name for field in change.changed for name in _CARRIERS.get(field, ())}
    if "Owner" in names and "Owner" not in full:
        names.discard("Owner")
    return {"id": meeting.crm_record_id, **{name: full[name] for name in sorted(names)}}


def history_hash(event_id: str, session: Session) -> str:
    """SHA-256 of what we write for ``session`` (its Event id included)."""
    canonical = json.dumps(
        _session_fields(event_id, session), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _session_fields(event_id: str, session: Session) -> dict[str, Any]:
    return {
        "Name": f"{session.provider} {session.provider_session_id}"[:120],
        "Provider_Session_Id": session.provider_session_id,
        "Event_Id": event_id,
        "Provider": session.provider,
        "Provider_Meeting_Id": session.provider_meeting_id,
        "Session_Start": zoho_time(session.start),
        "Session_End": zoho_time(session.end),
        "Duration_Minutes": session.duration_minutes,
        "Participant_Count": len(session.participants),
        HISTORY_SUBFORM: [
            {
                "Attendee_Name": p.name,
                "Attendee_Email": p.email,
                "Join_Time": zoho_time(p.join_time),
                "Leave_Time": zoho_time(p.leave_time),
                "Minutes_Attended": p.minutes_attended,
            }
            for p in session.participants
        ],
    }


def session_record(event_id: str, session: Session) -> dict[str, Any]:
    """The ``CRM_Meeting_Sessions`` record for ``session`` of the Event ``event_id``."""
    return {**_session_fields(event_id, session), "History_Hash": history_hash(event_id, session)}


# --- logged e-mail ----------------------------------------------------------------------


def mail_marker(key: str) -> str:
    """The line of a note that names the logged message's key (found again on a replay)."""
    return f"crm-meetings mail key: {key}"


def note_parents(email: SentEmail) -> list[tuple[str, str]]:
    """``(module, record id)`` of every record the note goes on: the meeting's Accounts,
    Deals, Contacts and Leads, and the recipients Zoho knows as Contacts or Leads; when
    none, the meeting's Event itself."""
    wanted = set(email.recipients)
    refs = list(email.meeting.related) + [
        i.crm_relation for i in email.meeting.invitees if i.email in wanted and i.crm_relation
    ]
    parents = [(module_of(r), r.record_id) for r in refs if module_of(r) in NOTE_PARENTS]
    if not parents and email.meeting.crm_record_id:
        parents = [("Events", email.meeting.crm_record_id)]
    return list(dict.fromkeys(parents))


def note_record(email: SentEmail, module: str, record_id: str) -> dict[str, Any]:
    """The note logging ``email`` on one record: the subject as title; From, To, Date,
    Message-ID, the key line and the text body as content."""
    sender = email.sender
    header = "\n".join(
        (
            f"E-mail sent by crm-meetings on {email.sent_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
            f"From: {sender.name} <{sender.email}>" if sender.name else f"From: {sender.email}",
            f"To: {', '.join(email.recipients)}",
            f"Message-ID: {email.message_id}",
            mail_marker(email.key),
        )
    )
    return {
        "Note_Title": " ".join(email.subject.split())[:120],
        "Note_Content": f"{header}\n\n{email.text}"[:32_000],
        "Parent_Id": {"module": {"api_name": module}, "id": record_id},
    }
