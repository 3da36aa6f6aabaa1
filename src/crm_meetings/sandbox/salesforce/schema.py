"""The Salesforce objects the emulator holds: fields, ids, value coercion and describe.

Ids are 18 characters: the object's key prefix (``00U`` Event, ``001`` Account…), a
counter, and the three-character case-safety suffix Salesforce appends to 15-character
ids. Datetimes are stored aware (UTC) and rendered as Salesforce renders them:
``2026-12-01T15:00:00.000+0000``.

Custom fields and objects are the ones crm-meetings' setup step deploys (see
``crm_meetings.connectors.salesforce``): extra ``__c`` fields on Event and the two history
objects ``CRM_Meeting_Session__c`` and ``CRM_Meeting_Participant__c``.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "OBJECTS",
    "Field",
    "Problem",
    "SObject",
    "coerce",
    "describe",
    "format_datetime",
    "parse_datetime",
    "sf_id",
]

_BASE62: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX: Final = string.ascii_uppercase + "012345"


def sf_id(prefix: str, number: int) -> str:
    """The 18-character id of the ``number``-th record with key ``prefix``."""
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
        if number == 0:
            break
    base = prefix + "5g" + digits.rjust(10, "0")
    suffix = ""
    for chunk in range(3):
        part = base[chunk * 5 : chunk * 5 + 5]
        flags = sum(1 << i for i, char in enumerate(part) if char.isupper())
        suffix += _SUFFIX[flags]
    return base + suffix


@functools.lru_cache(maxsize=65_536)  # every row's dates, on every query
def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{value.microsecond // 1000:03d}+0000"
    )


def parse_datetime(value: str) -> datetime:
    """ISO 8601 with an offset or ``Z`` (what Salesforce accepts); naive is UTC."""
    parsed = datetime.fromisoformat(value.strip())
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Field:
    type: str  # id | string | textarea | datetime | boolean | int | double | reference | picklist
    length: int = 0
    label: str = ""
    reference_to: tuple[str, ...] = ()
    external_id: bool = False
    unique: bool = False
    createable: bool = True
    updateable: bool = True
    custom: bool = False
    required: bool = False


@dataclass(frozen=True, slots=True)
class SObject:
    name: str
    prefix: str
    label: str
    fields: dict[str, Field]
    custom: bool = False

    @property
    def external_ids(self) -> tuple[str, ...]:
        return tuple(name for name, f in self.fields.items() if f.external_id)


@dataclass(frozen=True, slots=True)
class Problem:
    """One error Salesforce reports for one record: ``errorCode``/``statusCode``, fields."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_error(self) -> dict[str, Any]:
        """The REST error shape (``errorCode``), used by single-record resources."""
        return {"message": self.message, "errorCode": self.code, "fields": list(self.fields)}

    def as_status(self) -> dict[str, Any]:
        """The SaveResult error shape (``statusCode``), used inside collection results."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


_SYSTEM: Final = {
    "Id": Field("id", 18, "Record ID", createable=False, updateable=False),
    "CreatedDate": Field("datetime", label="Created Date", createable=False, updateable=False),
    "LastModifiedDate": Field(
        "datetime", label="Last Modified", createable=False, updateable=False
    ),
    "SystemModstamp": Field(
        "datetime", label="System Modstamp", createable=False, updateable=False
    ),
    "IsDeleted": Field("boolean", label="Deleted", createable=False, updateable=False),
}


def _text(length: int, label: str, **kwargs: Any) -> Field:
    return Field("string", length, label, **kwargs)


def _ref(label: str, *targets: str, **kwargs: Any) -> Field:
    return Field("reference", 18, label, reference_to=targets, **kwargs)


def _custom(field: Field) -> Field:
    return Field(
        field.type,
        field.length,
        field.label,
        field.reference_to,
        field.external_id,
        field.unique,
        field.createable,
        field.updateable,
        True,
        field.required,
    )


def _object(name: str, prefix: str, label: str, fields: dict[str, Field]) -> SObject:
    custom = name.endswith("__c")
    own = {k: _custom(v) if k.endswith("__c") else v for k, v in fields.items()}
    if custom:
        own = {"Name": _text(80, "Name"), **own}
    return SObject(name, prefix, label, {**_SYSTEM, **own}, custom)


OBJECTS: Final[dict[str, SObject]] = {
    o.name: o
    for o in (
        _object(
            "Event",
            "00U",
            "Event",
            {
                "Subject": _text(255, "Subject"),
                "StartDateTime": Field("datetime", label="Start"),
                "EndDateTime": Field("datetime", label="End"),
                "ActivityDateTime": Field("datetime", label="Due Date Time"),
                "DurationInMinutes": Field("int", label="Duration"),
                "IsAllDayEvent": Field("boolean", label="All-Day Event"),
                "Location": _text(255, "Location"),
                "Description": Field("textarea", 32000, "Description"),
                "OwnerId": _ref("Assigned To ID", "User"),
                "WhoId": _ref("Name ID", "Contact", "Lead"),
                "WhatId": _ref("Related To ID", "Account", "Opportunity"),
                "RecordTypeId": _ref("Record Type ID", "RecordType"),
                "Meeting_Id__c": _text(
                    255, "crm-meetings Meeting ID", external_id=True, unique=True
                ),
                "Meeting_UID__c": _text(255, "iCalendar UID"),
                "Meeting_Sequence__c": Field("double", label="iCalendar SEQUENCE"),
                "Meeting_Status__c": Field("picklist", 40, "Meeting Status"),
                "Meeting_Timezone__c": _text(64, "Organizer Time Zone"),
                "Organizer__c": _text(255, "Organizer"),
                "Join_URL__c": Field("url", 2048, "Join URL"),
                "Provider__c": _text(40, "Conferencing Provider"),
                "Provider_Meeting_Id__c": _text(255, "Provider Meeting ID"),
                "Invitees__c": Field("textarea", 131072, "Invitees (crm-meetings)"),
            },
        ),
        _object(
            "EventRelation",
            "0RE",
            "Event Relation",
            {
                "EventId": _ref("Event ID", "Event", updateable=False),
                "RelationId": _ref("Relation ID", "Contact", "Lead", "User", updateable=False),
                "Status": Field("picklist", 40, "Status"),
                "IsInvitee": Field("boolean", label="Invitee"),
                "IsParent": Field("boolean", label="Parent"),
                "IsWhat": Field("boolean", label="Is What", updateable=False),
                "RespondedDate": Field("datetime", label="Response Date"),
                "Response": _text(255, "Response"),
            },
        ),
        # Enhanced Email (object reference: EmailMessage, EmailMessageRelation); Mail_Key__c
        # is crm-meetings' unique external id for a logged message
        _object(
            "EmailMessage",
            "02s",
            "Email Message",
            {
                "Subject": _text(3000, "Subject"),
                "FromAddress": Field("email", 1000, "From Address"),
                "FromName": _text(1000, "From Name"),
                "ToAddress": _text(4000, "To Address"),
                "CcAddress": _text(4000, "CC Address"),
                "BccAddress": _text(4000, "BCC Address"),
                "TextBody": Field("textarea", 131072, "Text Body"),
                "HtmlBody": Field("textarea", 131072, "HTML Body"),
                "Headers": Field("textarea", 32000, "Headers"),
                "MessageDate": Field("datetime", label="Message Date"),
                "MessageIdentifier": _text(995, "Message ID"),
                "Status": Field("picklist", 40, "Status", required=True),
                "Incoming": Field("boolean", label="Is Incoming"),
                "RelatedToId": _ref("Related To ID", "Account", "Opportunity"),
                "Mail_Key__c": _text(255, "crm-meetings mail key", external_id=True, unique=True),
            },
        ),
        _object(
            "EmailMessageRelation",
            "0ER",
            "Email Message Relation",
            {
                "EmailMessageId": _ref("Email Message ID", "EmailMessage", updateable=False),
                "RelationId": _ref("Relation ID", "Contact", "Lead", "User"),
                "RelationAddress": _text(255, "Relation Address"),
                "RelationType": Field("picklist", 40, "Relation Type", required=True),
            },
        ),
        _object(
            "Account",
            "001",
            "Account",
            {"Name": _text(255, "Account Name"), "Website": _text(255, "Website")},
        ),
        _object(
            "Contact",
            "003",
            "Contact",
            {
                "FirstName": _text(40, "First Name"),
                "LastName": _text(80, "Last Name"),
                "Name": _text(121, "Full Name", createable=False, updateable=False),
                "Email": Field("email", 80, "Email"),
                "AccountId": _ref("Account ID", "Account"),
            },
        ),
        _object(
            "Lead",
            "00Q",
            "Lead",
            {
                "FirstName": _text(40, "First Name"),
                "LastName": _text(80, "Last Name"),
                "Name": _text(121, "Full Name", createable=False, updateable=False),
                "Email": Field("email", 80, "Email"),
                "Company": _text(255, "Company"),
            },
        ),
        _object(
            "Opportunity",
            "006",
            "Opportunity",
            {
                "Name": _text(120, "Name"),
                "AccountId": _ref("Account ID", "Account"),
                "StageName": Field("picklist", 255, "Stage"),
            },
        ),
        _object(
            "User",
            "005",
            "User",
            {
                "Name": _text(121, "Full Name", createable=False, updateable=False),
                "Email": Field("email", 128, "Email"),
                "Username": _text(80, "Username"),
                "IsActive": Field("boolean", label="Active"),
                "TimeZoneSidKey": Field("picklist", 40, "Time Zone"),
            },
        ),
        _object(
            "RecordType",
            "012",
            "Record Type",
            {
                "Name": _text(80, "Record Type Label"),
                "DeveloperName": _text(80, "Record Type Name"),
                "SobjectType": Field("picklist", 40, "SObject Type Name"),
                "IsActive": Field("boolean", label="Active"),
            },
        ),
        _object(
            "CRM_Meeting_Session__c",
            "a0S",
            "Meeting Session",
            {
                "Provider_Session_Id__c": _text(
                    255, "Provider Session ID", external_id=True, unique=True
                ),
                "Provider__c": _text(40, "Provider"),
                "Provider_Meeting_Id__c": _text(255, "Provider Meeting ID"),
                "Event_Id__c": _text(18, "Event ID"),
                "Start__c": Field("datetime", label="Actual Start"),
                "End__c": Field("datetime", label="Actual End"),
                "Duration_Minutes__c": Field("double", label="Duration (minutes)"),
            },
        ),
        _object(
            "CRM_Meeting_Participant__c",
            "a0P",
            "Meeting Participant",
            {
                "Attendance_Key__c": _text(255, "Attendance Key", external_id=True, unique=True),
                "Session__c": _ref("Session", "CRM_Meeting_Session__c"),
                "Email__c": Field("email", 80, "Email"),
                "Join__c": Field("datetime", label="Joined"),
                "Leave__c": Field("datetime", label="Left"),
                "Minutes__c": Field("double", label="Minutes Attended"),
            },
        ),
    )
}


def coerce(obj: SObject, name: str, value: Any) -> tuple[Any, Problem | None]:
    """A JSON value for field ``name`` as stored, or the problem Salesforce reports."""
    field = obj.fields[name]
    if value is None:
        return None, None
    kind = field.type
    bad = Problem(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{name}: value not of required type: {value!r}",
        (name,),
    )
    if kind == "datetime":
        if not isinstance(value, str):
            return None, bad
        try:
            return parse_datetime(value), None
        except ValueError:
            return None, bad
    if kind == "boolean":
        return (value, None) if isinstance(value, bool) else (None, bad)
    if kind in ("int", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, bad
        return (int(value) if kind == "int" else float(value)), None
    if not isinstance(value, str):
        return None, bad
    if field.length and len(value) > field.length:
        return None, Problem(
            "STRING_TOO_LONG",
            f"{field.label or name}: data value too large: {value[:40]}... "
            f"(max length={field.length})",
            (name,),
        )
    if kind == "email" and value and "@" not in value:
        return None, Problem(
            "INVALID_EMAIL_ADDRESS", f"{name}: invalid email address: {value}", (name,)
        )
    return value, None


_SOAP_TYPES: Final = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "datetime": "xsd:dateTime",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
}


def describe(obj: SObject, version: str, record_types: list[dict[str, Any]]) -> dict[str, Any]:
    """The sObject Describe body (the parts clients read: fields, record types, urls)."""
    base = f"/services/data/v{version}/sobjects/{obj.name}"
    fields = [
        {
            "name": name,
            "label": field.label or name,
            "type": field.type,
            "length": field.length,
            "custom": field.custom,
            "externalId": field.external_id,
            "unique": field.unique,
            "createable": field.createable,
            "updateable": field.updateable,
            "nillable": not field.required and field.type != "boolean",
            "referenceTo": list(field.reference_to),
            "soapType": _SOAP_TYPES.get(field.type, "xsd:string"),
        }
        for name, field in obj.fields.items()
    ]
    infos = [
        {
            "active": rt["IsActive"],
            "available": True,
            "defaultRecordTypeMapping": index == 0,
            "developerName": rt["DeveloperName"],
            "master": False,
            "name": rt["Name"],
            "recordTypeId": rt["Id"],
            "urls": {"layout": f"{base}/describe/layouts/{rt['Id']}"},
        }
        for index, rt in enumerate(record_types)
    ]
    infos.append(
        {
            "active": True,
            "available": True,
            "defaultRecordTypeMapping": not record_types,
            "developerName": "Master",
            "master": True,
            "name": "Master",
            "recordTypeId": "012000000000000AAA",
            "urls": {"layout": f"{base}/describe/layouts/012000000000000AAA"},
        }
    )
    return {
        "name": obj.name,
        "label": obj.label,
        "custom": obj.custom,
        "keyPrefix": obj.prefix,
        "createable": True,
        "updateable": True,
        "deletable": True,
        "queryable": True,
        "fields": fields,
        "recordTypeInfos": infos,
        "urls": {
            "sobject": base,
            "describe": f"{base}/describe",
            "rowTemplate": f"{base}/{{ID}}",
        },
    }
