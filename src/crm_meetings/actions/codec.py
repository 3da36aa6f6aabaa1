"""Meetings as JSON and back, for the idempotency records (pending state, stored results)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingStatus,
    Person,
    RecordRef,
    ResponseStatus,
)

__all__ = ["meeting_from_json", "meeting_to_json", "when", "when_or_none"]


def when(value: datetime) -> str:
    return value.isoformat()


def when_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _ref(ref: RecordRef | None) -> list[str] | None:
    return None if ref is None else [ref.object_type, ref.record_id]


def _unref(value: list[str] | None) -> RecordRef | None:
    return None if value is None else RecordRef(value[0], value[1])


def meeting_to_json(meeting: Meeting) -> dict[str, Any]:
    """Every field of ``meeting`` as JSON-ready values (times in ISO 8601 with offset)."""
    return {
        "id": meeting.id,
        "crm": meeting.crm.value,
        "subject": meeting.subject,
        "start": when(meeting.start),
        "end": when(meeting.end),
        "timezone": meeting.timezone,
        "organizer": {"email": meeting.organizer.email, "name": meeting.organizer.name},
        "uid": meeting.uid,
        "crm_record_id": meeting.crm_record_id,
        "description": meeting.description,
        "notes": meeting.notes,
        "location": meeting.location,
        "join_url": meeting.join_url,
        "invitees": [
            {
                "email": i.email,
                "name": i.name,
                "response": i.response.value,
                "optional": i.optional,
                "crm_relation": _ref(i.crm_relation),
            }
            for i in meeting.invitees
        ],
        "related": [_ref(r) for r in meeting.related],
        "record_type": meeting.record_type,
        "status": meeting.status.value,
        "sequence": meeting.sequence,
        "provider": meeting.provider,
        "provider_meeting_id": meeting.provider_meeting_id,
        "created_at": when_or_none(meeting.created_at),
        "updated_at": when_or_none(meeting.updated_at),
        "crm_modified_at": when_or_none(meeting.crm_modified_at),
        "version": meeting.version,
    }


def meeting_from_json(data: Mapping[str, Any]) -> Meeting:
    """The inverse of :func:`meeting_to_json`."""
    return Meeting(
        id=data["id"],
        crm=CrmKind(data["crm"]),
        subject=data["subject"],
        start=datetime.fromisoformat(data["start"]),
        end=datetime.fromisoformat(data["end"]),
        timezone=data["timezone"],
        organizer=Person(data["organizer"]["email"], data["organizer"]["name"]),
        uid=data["uid"],
        crm_record_id=data["crm_record_id"],
        description=data["description"],
        notes=data["notes"],
        location=data["location"],
        join_url=data["join_url"],
        invitees=tuple(
            Invitee(
                email=i["email"],
                name=i["name"],
                response=ResponseStatus(i["response"]),
                optional=i["optional"],
                crm_relation=_unref(i["crm_relation"]),
            )
            for i in data["invitees"]
        ),
        related=tuple(RecordRef(r[0], r[1]) for r in data["related"]),
        record_type=data["record_type"],
        status=MeetingStatus(data["status"]),
        sequence=data["sequence"],
        provider=data["provider"],
        provider_meeting_id=data["provider_meeting_id"],
        created_at=_parse(data["created_at"]),
        updated_at=_parse(data["updated_at"]),
        crm_modified_at=_parse(data["crm_modified_at"]),
        version=data["version"],
    )
