"""Pure mapping between HubSpot's wire JSON and the shared model, and HubSpot's error table.

Nothing here does I/O: every function takes the JSON HubSpot documents (as dicts) and
returns model values, request bodies, or :mod:`crm_meetings.errors` exceptions, so each is
unit-tested on the payloads in ``recordings/hubspot/``.

Field mapping (meeting ↔ ``/crm/v3/objects/meetings`` properties):

=====================  ==========================================================
subject                ``hs_meeting_title``
start / end            ``hs_meeting_start_time`` (and ``hs_timestamp``) / ``hs_meeting_end_time``
description / notes    ``hs_meeting_body`` / ``hs_internal_meeting_notes``
location / join_url    ``hs_meeting_location`` / ``hs_meeting_external_url``
status                 ``hs_meeting_outcome``: CANCELED ↔ cancelled, anything else scheduled
record_type            ``hs_activity_type`` (HubSpot's "call and meeting type")
organizer              ``crm_meetings_organizer``, and ``hubspot_owner_id`` when an owner
invitees               associated contacts (meeting→contact, type 200); names, answers and
                       contact ids also in ``crm_meetings_invitees`` (JSON), so one read suffices
related                associated companies (188), deals (212), tickets (216)
uid, id, timezone,     ``crm_meetings_uid`` (unique: the id property of idempotent creates),
sequence, provider…    ``crm_meetings_id``, ``crm_meetings_timezone``, ``crm_meetings_sequence``,
                       ``crm_meetings_provider``, ``crm_meetings_provider_meeting_id``
=====================  ==========================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from crm_meetings.connectors.base import HistoryItem, SentEmail, derived_identity
from crm_meetings.errors import (
    AuthError,
    AuthExpiredError,
    ConflictError,
    CrmMeetingsError,
    NotFoundError,
    RateLimitedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingStatus,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
)

__all__ = [
    "ASSOCIATION_TYPE_IDS",
    "EMAIL_ASSOCIATION_TYPE_IDS",
    "INVITEES_PROPERTY",
    "MAIL_KEY_PROPERTY",
    "MEETING_PROPERTIES",
    "REQUIRED_MEETING_PROPERTIES",
    "REQUIRED_SESSION_PROPERTIES",
    "SESSION_ID_PROPERTY",
    "UID_PROPERTY",
    "Associations",
    "Contact",
    "association_inputs",
    "batch_errors",
    "email_inputs",
    "email_properties",
    "error_from_hubspot",
    "format_datetime",
    "history_meeting_properties",
    "hubspot_properties",
    "invitee_contacts",
    "invitees_json",
    "meeting_from_hubspot",
    "object_type_of",
    "parse_datetime",
    "record_ref",
    "session_properties",
]

VENDOR: Final = "hubspot"
UID_PROPERTY: Final = "crm_meetings_uid"
INVITEES_PROPERTY: Final = "crm_meetings_invitees"
SESSION_ID_PROPERTY: Final = "crm_meetings_session_id"
DEFAULT_DURATION: Final = timedelta(minutes=30)
UNKNOWN_ORGANIZER: Final = Person("unknown-organizer@example.com", "Unknown organizer")

#: HUBSPOT_DEFINED association type ids from a meeting (v4 associations guide)
ASSOCIATION_TYPE_IDS: Final = {"contacts": 200, "companies": 188, "deals": 212, "tickets": 216}
#: ... and from an e-mail engagement (v4 associations guide: email to contact 198, …)
EMAIL_ASSOCIATION_TYPE_IDS: Final = {
    "contacts": 198,
    "companies": 186,
    "deals": 210,
    "tickets": 224,
}
#: unique property on emails: the logged message's key (a replayed create is a conflict)
MAIL_KEY_PROPERTY: Final = "crm_meetings_mail_key"

#: RecordRef.object_type -> HubSpot object type
_OBJECT_TYPES: Final = {"Contact": "contacts", "Company": "companies", "Deal": "deals",
                        "Ticket": "tickets"}  # fmt: skip
_REF_TYPES: Final = {v: k for k, v in _OBJECT_TYPES.items()}
RELATED_TYPES: Final = ("companies", "deals", "tickets")

#: model field -> the meeting properties it is written to
_FIELD_PROPERTIES: Final[Mapping[str, tuple[str, ...]]] = {
    "subject": ("hs_meeting_title",),
    "start": ("hs_meeting_start_time", "hs_timestamp"),
    "end": ("hs_meeting_end_time",),
    "description": ("hs_meeting_body",),
    "notes": ("hs_internal_meeting_notes",),
    "location": ("hs_meeting_location",),
    "join_url": ("hs_meeting_external_url",),
    "status": ("hs_meeting_outcome",),
    "record_type": ("hs_activity_type",),
    "organizer": ("crm_meetings_organizer", "hubspot_owner_id"),
    "invitees": (INVITEES_PROPERTY,),
    "uid": (UID_PROPERTY,),
    "id": ("crm_meetings_id",),
    "timezone": ("crm_meetings_timezone",),
    "sequence": ("crm_meetings_sequence",),
    "provider": ("crm_meetings_provider",),
    "provider_meeting_id": ("crm_meetings_provider_meeting_id",),
}
HISTORY_PROPERTIES: Final = (
    "crm_meetings_actual_start",
    "crm_meetings_actual_end",
    "crm_meetings_session_count",
)
MEETING_PROPERTIES: Final = tuple(
    dict.fromkeys(
        [p for props in _FIELD_PROPERTIES.values() for p in props]
        + ["hs_lastmodifieddate", "hs_createdate", *HISTORY_PROPERTIES]
    )
)
#: crm-meetings' own meeting properties: the setup step creates them (doctor checks)
REQUIRED_MEETING_PROPERTIES: Final = tuple(
    p for p in MEETING_PROPERTIES if p.startswith("crm_meetings_")
)
REQUIRED_SESSION_PROPERTIES: Final = (
    SESSION_ID_PROPERTY,
    "crm_meetings_meeting_record_id",
    "crm_meetings_provider",
    "crm_meetings_provider_meeting_id",
    "crm_meetings_start",
    "crm_meetings_end",
    "crm_meetings_duration_minutes",
    "crm_meetings_participant_count",
    "crm_meetings_participants",
)


# --- values ---------------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """HubSpot's datetime property format: UTC ISO 8601 with milliseconds."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(value: str | None) -> datetime | None:
    """A datetime property value (ISO 8601 or epoch milliseconds); ``None`` when empty."""
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Contact:
    """An associated contact, as far as the meeting needs it (and its invitee answer)."""

    id: str
    email: str | None
    name: str = ""
    response: ResponseStatus = ResponseStatus.NEEDS_ACTION
    optional: bool = False

    @classmethod
    def from_hubspot(cls, obj: Mapping[str, Any]) -> Contact:
        props = obj.get("properties") or {}
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
        return cls(str(obj["id"]), (props.get("email") or None), name)


@dataclass(frozen=True, slots=True)
class Associations:
    """What a meeting is associated with: contacts (its invitees) and other records."""

    contacts: tuple[Contact, ...] = ()
    records: tuple[RecordRef, ...] = ()


def object_type_of(ref: RecordRef) -> str:
    """HubSpot's object type for a record reference (``Company`` → ``companies``)."""
    name = ref.object_type
    found = _OBJECT_TYPES.get(name) or (name if name in _REF_TYPES else None)
    found = found or _OBJECT_TYPES.get(name.capitalize())
    if found is None:
        raise ValidationError(
            "related",
            f"{name!r} is not a HubSpot object a meeting can be associated with",
            hint=f"Use one of {', '.join(_OBJECT_TYPES)}.",
        )
    return found


def record_ref(object_type: str, record_id: str) -> RecordRef:
    return RecordRef(_REF_TYPES[object_type], str(record_id))


# --- meeting ↔ properties -----------------------------------------------------------------


def invitees_json(meeting: Meeting, contact_ids: Mapping[str, str]) -> str:
    """``crm_meetings_invitees``: each invitee with its contact id, as compact JSON."""
    return json.dumps(
        [
            {
                "email": i.email,
                "name": i.name,
                "response": i.response.value,
                "optional": i.optional,
                "contactId": contact_ids.get(i.email),
            }
            for i in meeting.invitees
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def invitee_contacts(props: Mapping[str, Any]) -> dict[str, Contact]:
    """Contact id → contact, from ``crm_meetings_invitees`` (empty when absent or bad)."""
    try:
        rows = json.loads(props.get(INVITEES_PROPERTY) or "[]")
    except ValueError:
        return {}
    out: dict[str, Contact] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("contactId") and row.get("email"):
            response = row.get("response")
            out[str(row["contactId"])] = Contact(
                str(row["contactId"]),
                str(row["email"]),
                str(row.get("name") or ""),
                ResponseStatus(str(response))
                if response in ResponseStatus.__members__.values()
                else ResponseStatus.NEEDS_ACTION,
                bool(row.get("optional")),
            )
    return out


def hubspot_properties(
    meeting: Meeting,
    fields: Iterable[str] | None = None,
    *,
    owner_id: str | None = None,
    contact_ids: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The meeting's properties (only those written for ``fields`` when given).

    ``contact_ids`` maps invitee e-mails to their contact ids (for ``crm_meetings_invitees``).
    """
    values = {
        "hs_meeting_title": meeting.subject,
        "hs_meeting_start_time": format_datetime(meeting.start),
        "hs_timestamp": format_datetime(meeting.start),
        "hs_meeting_end_time": format_datetime(meeting.end),
        "hs_meeting_body": meeting.description,
        "hs_internal_meeting_notes": meeting.notes,
        "hs_meeting_location": meeting.location,
        "hs_meeting_external_url": meeting.join_url or "",
        "hs_meeting_outcome": (
            "CANCELED" if meeting.status is MeetingStatus.CANCELLED else "SCHEDULED"
        ),
        "hs_activity_type": meeting.record_type or "",
        "crm_meetings_organizer": meeting.organizer.email,
        "hubspot_owner_id": owner_id or "",
        INVITEES_PROPERTY: invitees_json(meeting, contact_ids or {}),
        UID_PROPERTY: meeting.uid,
        "crm_meetings_id": meeting.id,
        "crm_meetings_timezone": meeting.timezone,
        "crm_meetings_sequence": str(meeting.sequence),
        "crm_meetings_provider": meeting.provider or "",
        "crm_meetings_provider_meeting_id": meeting.provider_meeting_id or "",
    }
    wanted = (
        [p for props in _FIELD_PROPERTIES.values() for p in props]
        if fields is None
        else [p for f in fields for p in _FIELD_PROPERTIES.get(f, ())]
    )
    out = {name: values[name] for name in dict.fromkeys(wanted)}
    if owner_id is None:
        out.pop("hubspot_owner_id", None)  # unknown owner: leave HubSpot's value alone
    return out


def meeting_from_hubspot(
    obj: Mapping[str, Any],
    associations: Associations = Associations(),
    *,
    owners: Mapping[str, str] | None = None,
) -> Meeting:
    """A meeting from a HubSpot meeting object and what it is associated with.

    ``owners`` maps owner ids to e-mails, for meetings crm-meetings did not create. A
    meeting without an end (a logged activity) lasts :data:`DEFAULT_DURATION`.
    """
    props: Mapping[str, Any] = obj.get("properties") or {}
    record_id = str(obj.get("id") or props.get("hs_object_id"))
    local_id, uid = derived_identity(CrmKind.HUBSPOT, record_id)
    start = parse_datetime(props.get("hs_meeting_start_time")) or parse_datetime(
        props.get("hs_timestamp")
    )
    if start is None:
        raise ValidationError("hs_timestamp", f"meeting {record_id} has no start time")
    end = parse_datetime(props.get("hs_meeting_end_time"))
    if end is None or end <= start:
        end = start + DEFAULT_DURATION
    owner_email = (owners or {}).get(str(props.get("hubspot_owner_id") or ""))
    organizer_email = props.get("crm_meetings_organizer") or owner_email
    organizer = Person(organizer_email) if organizer_email else UNKNOWN_ORGANIZER
    invitees = tuple(
        Invitee(email, c.name, c.response, c.optional, record_ref("contacts", c.id))
        for c in _unique_by_email(associations.contacts)
        if (email := c.email)
    )
    return Meeting(
        id=props.get("crm_meetings_id") or local_id,
        crm=CrmKind.HUBSPOT,
        subject=(props.get("hs_meeting_title") or "").strip() or "(no title)",
        start=start,
        end=end,
        timezone=props.get("crm_meetings_timezone") or "UTC",
        organizer=organizer,
        uid=props.get(UID_PROPERTY) or uid,
        crm_record_id=record_id,
        description=props.get("hs_meeting_body") or "",
        notes=props.get("hs_internal_meeting_notes") or "",
        location=(props.get("hs_meeting_location") or "").replace("\n", " "),
        join_url=props.get("hs_meeting_external_url") or None,
        invitees=invitees,
        related=associations.records,
        record_type=props.get("hs_activity_type") or None,
        status=(
            MeetingStatus.CANCELLED
            if props.get("hs_meeting_outcome") == "CANCELED"
            else MeetingStatus.SCHEDULED
        ),
        sequence=int(props.get("crm_meetings_sequence") or 0),
        provider=props.get("crm_meetings_provider") or None,
        provider_meeting_id=props.get("crm_meetings_provider_meeting_id") or None,
        created_at=parse_datetime(props.get("hs_createdate")),
        crm_modified_at=parse_datetime(props.get("hs_lastmodifieddate")),
    )


def _unique_by_email(contacts: Iterable[Contact]) -> list[Contact]:
    seen: dict[str, Contact] = {}
    for contact in contacts:
        if contact.email and contact.email.lower() not in seen:
            seen[contact.email.lower()] = contact
    return list(seen.values())


def association_inputs(
    contact_ids: Iterable[str], related: Iterable[RecordRef]
) -> list[dict[str, Any]]:
    """The ``associations`` array of a create input (HUBSPOT_DEFINED type ids)."""
    targets = [("contacts", cid) for cid in contact_ids] + [
        (object_type_of(ref), ref.record_id) for ref in related
    ]
    return [
        {
            "to": {"id": target_id},
            "types": [
                {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": ASSOCIATION_TYPE_IDS[object_type],
                }
            ],
        }
        for object_type, target_id in dict.fromkeys(targets)
    ]


# --- logged e-mail ----------------------------------------------------------------------


def email_properties(email: SentEmail) -> dict[str, str]:
    """The emails engagement (emails API guide): outgoing (``EMAIL``), ``SENT``, with the
    From and To in ``hs_email_headers`` (HubSpot fills the read-only sender and recipient
    properties from it) and the message's key in ``crm_meetings_mail_key``."""
    first, _, last = email.sender.name.partition(" ")
    sender: dict[str, str] = {"email": email.sender.email}
    if first:
        sender |= {"firstName": first, "lastName": last}
    headers = {
        "from": sender,
        "sender": {"email": email.sender.email},
        "to": [{"email": r} for r in email.recipients],
        "cc": [],
        "bcc": [],
    }
    return {
        "hs_timestamp": format_datetime(email.sent_at),
        "hs_email_direction": "EMAIL",
        "hs_email_status": "SENT",
        "hs_email_subject": email.subject,
        "hs_email_text": email.text,
        "hs_email_html": email.html,
        "hs_email_headers": json.dumps(headers, separators=(",", ":")),
        MAIL_KEY_PROPERTY: email.key,
    }


def email_inputs(email: SentEmail) -> dict[str, Any]:
    """One batch-create input: the properties, the key as ``objectWriteTraceId``, and the
    associations with the meeting's records and the recipients known as contacts."""
    wanted = set(email.recipients)
    contacts = [
        ("contacts", i.crm_relation.record_id)
        for i in email.meeting.invitees
        if i.email in wanted and i.crm_relation and i.crm_relation.object_type == "Contact"
    ]
    targets = contacts + [(object_type_of(r), r.record_id) for r in email.meeting.related]
    return {
        "objectWriteTraceId": email.key,
        "properties": email_properties(email),
        "associations": [
            {
                "to": {"id": target_id},
                "types": [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": EMAIL_ASSOCIATION_TYPE_IDS[object_type],
                    }
                ],
            }
            for object_type, target_id in dict.fromkeys(targets)
        ],
    }


# --- history --------------------------------------------------------------------------


def history_meeting_properties(item: HistoryItem) -> dict[str, str]:
    """What the meeting itself records: outcome COMPLETED, actual start/end, sessions —
    over every session of the meeting, not only those this write adds."""
    sessions = item.all_sessions()
    if not sessions:
        return {"hs_meeting_outcome": "NO_SHOW"}
    return {
        "hs_meeting_outcome": "COMPLETED",
        "crm_meetings_actual_start": format_datetime(min(s.start for s in sessions)),
        "crm_meetings_actual_end": format_datetime(max(s.end for s in sessions)),
        "crm_meetings_session_count": str(len(sessions)),
    }


def session_properties(session: Session, meeting_record_id: str) -> dict[str, str]:
    """The session record's properties (its id property goes in the upsert's ``id``)."""
    participants = [
        {
            "name": p.name,
            "email": p.email,
            "join": format_datetime(p.join_time),
            "leave": format_datetime(p.leave_time),
            "minutes": p.minutes_attended,
        }
        for p in sorted(session.participants, key=lambda p: (p.join_time, p.name, p.email or ""))
    ]
    return {
        "crm_meetings_meeting_record_id": meeting_record_id,
        "crm_meetings_provider": session.provider,
        "crm_meetings_provider_meeting_id": session.provider_meeting_id,
        "crm_meetings_start": format_datetime(session.start),
        "crm_meetings_end": format_datetime(session.end),
        "crm_meetings_duration_minutes": str(session.duration_minutes),
        "crm_meetings_participant_count": str(len(participants)),
        "crm_meetings_participants": json.dumps(participants, separators=(",", ":")),
    }


# --- errors ---------------------------------------------------------------------------

_PROPERTY_NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')


def _property_of(body: Mapping[str, Any]) -> str | None:
    """The property a HubSpot validation error names (context, details, or its message)."""
    for holder in (body, *(body.get("errors") or [])):
        if not isinstance(holder, Mapping):
            continue
        context = holder.get("context") or {}
        names = context.get("propertyName") if isinstance(context, Mapping) else None
        if names:
            return str(names[0] if isinstance(names, list) else names)
        if holder.get("in"):
            return str(holder["in"])
    found = _PROPERTY_NAME.search(str(body.get("message", "")))
    return found.group(1) if found else None


def _retry_after(headers: Mapping[str, str], body: Mapping[str, Any]) -> float | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    if body.get("policyName") == "DAILY":
        return 24 * 3600.0  # the daily budget is spent: no retry today
    interval = lowered.get("x-hubspot-ratelimit-interval-milliseconds")
    return int(interval) / 1000 if interval and interval.isdigit() else 10.0


def error_from_hubspot(
    status: int, body: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None
) -> CrmMeetingsError:
    """The one table from HubSpot's answers to :mod:`crm_meetings.errors`."""
    body = body or {}
    headers = headers or {}
    message = str(body.get("message") or f"HTTP {status}")
    category = body.get("category") or body.get("errorType") or body.get("status")
    code = str(category) if category else None
    request_id = body.get("correlationId")
    common: dict[str, Any] = {
        "vendor": VENDOR,
        "status": status,
        "vendor_code": code,
        "request_id": request_id,
    }
    if status == 429:
        return RateLimitedError(message, retry_after=_retry_after(headers, body), **common)
    if status == 401:
        return AuthExpiredError(message, **common)
    if status == 403:
        return AuthError(
            message,
            **common,
            hint="Grant the app the crm.objects.* scopes it needs, then re-authorise.",
        )
    if status == 404:
        return NotFoundError(f"hubspot: {message}")
    if status == 409:
        return ConflictError(f"hubspot: {message}")
    if status == 400 and code in (None, "VALIDATION_ERROR"):
        field = _property_of(body) or "request"
        return ValidationError(field, f"HubSpot rejected it: {message}")
    return RemoteError(message, **common)


def batch_errors(body: Mapping[str, Any], status: int = 207) -> dict[str, CrmMeetingsError]:
    """Per-record errors of a batch answer, keyed by objectWriteTraceId (else by id)."""
    out: dict[str, CrmMeetingsError] = {}
    for error in body.get("errors") or []:
        context = error.get("context") or {}
        keys: Sequence[str] = context.get("objectWriteTraceId") or context.get("ids") or []
        code = {"OBJECT_NOT_FOUND": 404, "CONFLICT": 409}.get(str(error.get("category")), 400)
        for key in keys:
            out[str(key)] = error_from_hubspot(code, error)
    return out
