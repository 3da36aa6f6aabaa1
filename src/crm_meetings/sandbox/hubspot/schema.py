"""What the HubSpot emulator knows about object types, properties and association types.

Object types are addressed as HubSpot allows: by plural name (``meetings``), by
objectTypeId (``0-47``), and, for the custom session object, by objectTypeId (``2-…``) or
fully qualified name (``p{portalId}_crm_meetings_session``).

Association type ids are HubSpot's HUBSPOT_DEFINED ones from the v4 associations guide
(meeting→contact 200, meeting→company 188, meeting→deal 212, meeting→ticket 216, and the
reverse directions 199, 187, 211, 215).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ASSOCIATION_TYPES",
    "OBJECT_TYPES",
    "PORTAL_ID",
    "SESSION_OBJECT",
    "ObjectType",
    "PropertyDef",
    "association_type",
    "canonical",
    "object_properties",
]

PORTAL_ID: Final = 4242
SESSION_OBJECT: Final = "2-9000001"
SESSION_FQN: Final = f"p{PORTAL_ID}_crm_meetings_session"


@dataclass(frozen=True, slots=True)
class PropertyDef:
    """One property as the properties API describes it."""

    name: str
    label: str
    type: str = "string"  # string | number | datetime | enumeration | bool
    field_type: str = "text"
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    unique: bool = False
    read_only: bool = False
    custom: bool = False

    def to_json(self, object_type: str) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": "crm_meetings" if self.custom else f"{object_type}information",
            "description": "",
            "options": [
                {"label": label, "value": value, "displayOrder": i, "hidden": False}
                for i, (value, label) in enumerate(self.options)
            ],
            "hasUniqueValue": self.unique,
            "hidden": False,
            "formField": False,
            "calculated": False,
            "externalOptions": False,
            "modificationMetadata": {
                "archivable": self.custom,
                "readOnlyDefinition": not self.custom,
                "readOnlyValue": self.read_only,
            },
        }


@dataclass(frozen=True, slots=True)
class ObjectType:
    name: str  # canonical plural name used in paths: "meetings"
    type_id: str  # objectTypeId: "0-47"
    singular: str  # "meeting": the association-search pseudo-property's suffix
    aliases: tuple[str, ...] = ()
    properties: tuple[PropertyDef, ...] = field(default=())


def _dt(
    name: str, label: str, *, unique: bool = False, read_only: bool = False, custom: bool = False
) -> PropertyDef:
    return PropertyDef(
        name, label, "datetime", "date", unique=unique, read_only=read_only, custom=custom
    )


def _text(
    name: str, label: str, *, unique: bool = False, read_only: bool = False, custom: bool = False
) -> PropertyDef:
    return PropertyDef(
        name, label, "string", "text", unique=unique, read_only=read_only, custom=custom
    )


def _number(
    name: str, label: str, *, unique: bool = False, read_only: bool = False, custom: bool = False
) -> PropertyDef:
    return PropertyDef(
        name, label, "number", "number", unique=unique, read_only=read_only, custom=custom
    )


_COMMON = (
    _number("hs_object_id", "Record ID", read_only=True),
    _dt("hs_createdate", "Create date", read_only=True),
    _dt("hs_lastmodifieddate", "Last modified date", read_only=True),
    _text("hubspot_owner_id", "Owner"),
)

OUTCOMES: Final = ("SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED")

_MEETING = (
    *_COMMON,
    _dt("hs_timestamp", "Activity date"),
    _text("hs_meeting_title", "Meeting name"),
    PropertyDef("hs_meeting_body", "Meeting description", "string", "textarea"),
    PropertyDef("hs_internal_meeting_notes", "Internal meeting notes", "string", "textarea"),
    _dt("hs_meeting_start_time", "Start time"),
    _dt("hs_meeting_end_time", "End time"),
    _text("hs_meeting_location", "Location"),
    _text("hs_meeting_external_url", "External URL"),
    PropertyDef(
        "hs_meeting_outcome",
        "Meeting outcome",
        "enumeration",
        "select",
        options=tuple((o, o.replace("_", " ").title()) for o in OUTCOMES),
    ),
    PropertyDef(
        "hs_activity_type",
        "Call and meeting type",
        "enumeration",
        "select",
        options=(("Discovery", "Discovery"), ("Demo", "Demo"), ("Follow-up", "Follow-up")),
    ),
    # crm-meetings' own properties, created by the documented setup step
    _text("crm_meetings_uid", "crm-meetings UID", unique=True, custom=True),
    _text("crm_meetings_id", "crm-meetings id", custom=True),
    _text("crm_meetings_timezone", "crm-meetings timezone", custom=True),
    _number("crm_meetings_sequence", "crm-meetings SEQUENCE", custom=True),
    _text("crm_meetings_organizer", "crm-meetings organizer e-mail", custom=True),
    PropertyDef(
        "crm_meetings_invitees", "crm-meetings invitees (JSON)", "string", "textarea", custom=True
    ),
    _text("crm_meetings_provider", "Conferencing provider", custom=True),
    _text("crm_meetings_provider_meeting_id", "Provider meeting id", custom=True),
    _dt("crm_meetings_actual_start", "Actual start", custom=True),
    _dt("crm_meetings_actual_end", "Actual end", custom=True),
    _number("crm_meetings_session_count", "Sessions held", custom=True),
)

_SESSION = (
    *_COMMON,
    _text("crm_meetings_session_id", "Provider session id", unique=True, custom=True),
    _text("crm_meetings_meeting_record_id", "HubSpot meeting id", custom=True),
    _text("crm_meetings_provider", "Conferencing provider", custom=True),
    _text("crm_meetings_provider_meeting_id", "Provider meeting id", custom=True),
    _dt("crm_meetings_start", "Session start", custom=True),
    _dt("crm_meetings_end", "Session end", custom=True),
    _number("crm_meetings_duration_minutes", "Duration (minutes)", custom=True),
    _number("crm_meetings_participant_count", "Participants", custom=True),
    PropertyDef(
        "crm_meetings_participants", "Participants (JSON)", "string", "textarea", custom=True
    ),
)

#: the emails engagement (emails API guide) and crm-meetings' unique key property
_EMAIL = (
    *_COMMON,
    _dt("hs_timestamp", "Activity date"),
    PropertyDef(
        "hs_email_direction",
        "Email direction",
        "enumeration",
        "select",
        options=(
            ("EMAIL", "Sent by"),
            ("INCOMING_EMAIL", "Reply"),
            ("FORWARDED_EMAIL", "Forwarded"),
        ),
    ),
    PropertyDef(
        "hs_email_status",
        "Email send status",
        "enumeration",
        "select",
        options=tuple(
            (v, v.title()) for v in ("BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT")
        ),
    ),
    _text("hs_email_subject", "Email subject"),
    PropertyDef("hs_email_text", "Email body", "string", "textarea"),
    PropertyDef("hs_email_html", "Email HTML body", "string", "html"),
    PropertyDef("hs_email_headers", "Email headers", "string", "textarea"),
    _text("crm_meetings_mail_key", "crm-meetings mail key", unique=True, custom=True),
)

_CONTACT = (
    *_COMMON,
    _text("email", "Email", unique=True),
    _text("firstname", "First name"),
    _text("lastname", "Last name"),
)
_COMPANY = (*_COMMON, _text("name", "Company name"), _text("domain", "Company domain name"))
_DEAL = (*_COMMON, _text("dealname", "Deal name"))
_TICKET = (
    *_COMMON,
    _text("subject", "Ticket name"),
    _text("hs_pipeline", "Pipeline"),
    _text("hs_pipeline_stage", "Ticket status"),
)

OBJECT_TYPES: Final = (
    ObjectType("meetings", "0-47", "meeting", ("meeting", "meeting_event"), _MEETING),
    ObjectType("emails", "0-49", "email", ("email",), _EMAIL),
    ObjectType("contacts", "0-1", "contact", ("contact",), _CONTACT),
    ObjectType("companies", "0-2", "company", ("company",), _COMPANY),
    ObjectType("deals", "0-3", "deal", ("deal",), _DEAL),
    ObjectType("tickets", "0-5", "ticket", ("ticket",), _TICKET),
    ObjectType(SESSION_OBJECT, SESSION_OBJECT, "crm_meetings_session", (SESSION_FQN,), _SESSION),
)

_BY_NAME: Final = {
    alias.lower(): t.name
    for t in OBJECT_TYPES
    for alias in (t.name, t.type_id, t.singular, *t.aliases)
}


def canonical(name: str) -> str | None:
    """The canonical object type for a path segment, or ``None`` when unknown."""
    return _BY_NAME.get(name.lower())


def object_type(name: str) -> ObjectType:
    return next(t for t in OBJECT_TYPES if t.name == name)


def object_properties(name: str) -> dict[str, PropertyDef]:
    return {p.name: p for p in object_type(name).properties}


#: (from, to) -> (typeId, reverse typeId), HUBSPOT_DEFINED
ASSOCIATION_TYPES: Final[dict[tuple[str, str], tuple[int, int]]] = {
    ("meetings", "contacts"): (200, 199),
    ("meetings", "companies"): (188, 187),
    ("meetings", "deals"): (212, 211),
    ("meetings", "tickets"): (216, 215),
    ("emails", "contacts"): (198, 197),
    ("emails", "companies"): (186, 185),
    ("emails", "deals"): (210, 209),
    ("emails", "tickets"): (224, 223),
    ("contacts", "companies"): (279, 280),
    ("deals", "companies"): (341, 342),
    (SESSION_OBJECT, "meetings"): (9001, 9002),  # custom object: USER_DEFINED default type
    (SESSION_OBJECT, "contacts"): (9003, 9004),
}


def association_type(from_type: str, to_type: str) -> tuple[str, int] | None:
    """``(category, typeId)`` of the default association from one type to another."""
    if (from_type, to_type) in ASSOCIATION_TYPES:
        type_id = ASSOCIATION_TYPES[(from_type, to_type)][0]
    elif (to_type, from_type) in ASSOCIATION_TYPES:
        type_id = ASSOCIATION_TYPES[(to_type, from_type)][1]
    else:
        return None
    custom = SESSION_OBJECT in (from_type, to_type)
    return ("USER_DEFINED" if custom else "HUBSPOT_DEFINED"), type_id
