"""The actions' requests: small frozen values, checked on construction.

Mutating requests carry an ``idempotency_key``; their :meth:`fingerprint` (SHA-256 of the
request without the key) tells a repeat from a different request under the same key.
A meeting is named by our id or by its CRM record id (``meeting``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final

from crm_meetings.errors import ValidationError
from crm_meetings.model import Invitee, Person, RecordRef, utc

__all__ = [
    "CancelRequest",
    "DeleteRequest",
    "EditRequest",
    "MeetingRequest",
    "ScheduleRequest",
    "ViewRequest",
    "check_key",
]

MAX_KEY: Final = 255
_KEY: Final = re.compile(r"^[\x21-\x7e]+$")


def check_key(value: object, field_name: str = "idempotency_key") -> str:
    """An idempotency key: 1–255 printable ASCII characters without spaces."""
    if not isinstance(value, str) or not _KEY.match(value) or len(value) > MAX_KEY:
        raise ValidationError(
            field_name,
            f"{value!r} is not a valid idempotency key",
            hint="Use 1 to 255 printable ASCII characters without spaces, e.g. a UUID.",
        )
    return value


def _check_meeting(value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY:
        raise ValidationError("meeting", f"{value!r} is not a meeting id or CRM record id")


def _plain(value: Any) -> Any:
    """A JSON-ready, order-stable form of a request field, for the fingerprint."""
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


#: optional fields added after requests were first stored: left out of the fingerprint
#: while unset, so a request saved before they existed still matches its repeat
_ADDED_LATER: Final = frozenset({"rotation"})


class _Fingerprinted:
    """Mixin: the SHA-256 of every field except the idempotency key."""

    __slots__ = ()

    def fingerprint(self) -> str:
        assert dataclasses.is_dataclass(self)
        fields = {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "idempotency_key"
            and not (f.name in _ADDED_LATER and getattr(self, f.name) is None)
        }
        material = json.dumps([type(self).__name__, fields], sort_keys=True)
        return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRequest(_Fingerprinted):
    """A new meeting; ``organizer`` defaults to the acting user.

    ``rotation`` (a rotation's id or name in the org) books the meeting through that
    rotation: without an ``organizer`` the rotation's rule picks the member who hosts it;
    with one, that member is booked (they must belong to the rotation). The member's count
    is written in the same transaction as the meeting.
    """

    idempotency_key: str
    subject: str
    start: datetime
    end: datetime
    timezone: str
    invitees: tuple[Invitee, ...] = ()
    related: tuple[RecordRef, ...] = ()
    description: str = ""
    notes: str = ""
    location: str = ""
    record_type: str | None = None
    organizer: Person | None = None
    rotation: str | None = None

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        if self.rotation is not None and not self.rotation.strip():
            raise ValidationError("rotation", "names no rotation", hint="Give its id or name.")
        object.__setattr__(self, "start", utc(self.start, "start"))
        object.__setattr__(self, "end", utc(self.end, "end"))
        object.__setattr__(self, "invitees", tuple(self.invitees))
        object.__setattr__(self, "related", tuple(self.related))


@dataclass(frozen=True, slots=True, kw_only=True)
class EditRequest(_Fingerprinted):
    """Save and send update: the fields to change (``None``: unchanged).

    ``expected_version`` is the version the rep loaded; ``invitees`` is the whole new
    list.
    """

    idempotency_key: str
    meeting: str
    expected_version: int
    subject: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    description: str | None = None
    notes: str | None = None
    location: str | None = None
    invitees: tuple[Invitee, ...] | None = None

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        _check_meeting(self.meeting)
        if isinstance(self.expected_version, bool) or not isinstance(self.expected_version, int):
            raise ValidationError("expected_version", "must be an integer")
        if self.expected_version < 1:
            raise ValidationError("expected_version", "must be at least 1")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, utc(value, name))
        if self.invitees is not None:
            object.__setattr__(self, "invitees", tuple(self.invitees))
        if not self.changes():
            raise ValidationError("changes", "nothing to change", hint="Give at least one field.")

    def changes(self) -> dict[str, Any]:
        """The fields to change, as ``Meeting.revise`` keywords."""
        names = ("subject", "start", "end", "description", "notes", "location", "invitees")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingRequest(_Fingerprinted):
    """An action on one meeting with nothing else to say (cancel, delete)."""

    idempotency_key: str
    meeting: str

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        _check_meeting(self.meeting)


CancelRequest = MeetingRequest
DeleteRequest = MeetingRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewRequest:
    """A read-only action (share, add to calendar): no side effect, so no key."""

    meeting: str

    def __post_init__(self) -> None:
        _check_meeting(self.meeting)
