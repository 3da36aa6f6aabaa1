"""``/api/v1`` endpoints over :mod:`crm_meetings.actions`: schedule, edit, cancel, delete.

Each takes an ``Idempotency-Key`` header, passed to the action unchanged: a repeat
returns the first result (``replayed: true``); the same key with another request is 409.
The action runs in the caller's org, as the caller (organizer or listed admin).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Header, Path
from pydantic import AwareDatetime, BaseModel, Field

from crm_meetings import actions
from crm_meetings.actions import ActionContext, ActionResult
from crm_meetings.errors import ConfigurationError, ValidationError
from crm_meetings.model import Invitee, RecordRef
from crm_meetings.web.api import ERROR_RESPONSES
from crm_meetings.web.deps import Caller, State, WebState
from crm_meetings.web.schemas import MeetingOut
from crm_meetings.web.security import Principal

__all__ = ["ActionOut", "ActionsUnavailableError", "router"]

router = APIRouter(prefix="/api/v1", tags=["actions"], responses=ERROR_RESPONSES)

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=255)]
MeetingId = Annotated[str, Path(min_length=1, max_length=255)]


class ActionsUnavailableError(ConfigurationError):
    """This server was started without a CRM connection for actions."""

    code = "actions_unavailable"
    http_status = 503


class LocalTimeIn(BaseModel):
    """A wall-clock time in an IANA zone, as a ``datetime-local`` form field gives it."""

    local: datetime = Field(description="YYYY-MM-DDTHH:MM, no offset")
    timezone: str = Field(min_length=1, max_length=64)


When = AwareDatetime | LocalTimeIn


class PersonIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=255)


class RecordIn(BaseModel):
    object_type: str = Field(min_length=1, max_length=255)
    record_id: str = Field(min_length=1, max_length=255)


class ScheduleIn(BaseModel):
    subject: str = Field(min_length=1, max_length=255)
    start: When
    end: When
    timezone: str | None = Field(default=None, description="Defaults to start's zone.")
    invitees: list[PersonIn] = Field(default_factory=list, max_length=500)
    related: list[RecordIn] = Field(default_factory=list, max_length=50)
    description: str = Field(default="", max_length=32_000)
    location: str = Field(default="", max_length=255)
    record_type: str | None = Field(default=None, max_length=255)


class EditIn(BaseModel):
    expected_version: int = Field(ge=1)
    subject: str | None = Field(default=None, min_length=1, max_length=255)
    start: When | None = None
    end: When | None = None
    description: str | None = Field(default=None, max_length=32_000)
    location: str | None = Field(default=None, max_length=255)
    invitees: list[PersonIn] | None = Field(default=None, max_length=500)


class MessageOut(BaseModel):
    recipient: str
    method: str
    sequence: int
    new: bool


class ActionOut(BaseModel):
    action: str
    meeting: MeetingOut
    done: list[str]
    messages: list[MessageOut]
    warnings: list[str]
    replayed: bool

    @classmethod
    def of(cls, result: ActionResult) -> ActionOut:
        return cls(
            action=result.action.value,
            meeting=MeetingOut.of(result.meeting),
            done=list(result.done),
            messages=[
                MessageOut(recipient=m.recipient, method=m.method, sequence=m.sequence, new=m.new)
                for m in result.messages
            ],
            warnings=list(result.warnings),
            replayed=result.replayed,
        )


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(field, f"{name!r} is not an IANA timezone") from exc


def _instant(value: datetime | LocalTimeIn, field: str) -> datetime:
    if isinstance(value, LocalTimeIn):
        if value.local.tzinfo is not None:
            raise ValidationError(field, "give local time without an offset, or an ISO instant")
        return value.local.replace(tzinfo=_zone(value.timezone, f"{field}.timezone"))
    return value


def _zone_name(value: datetime | LocalTimeIn, explicit: str | None) -> str:
    if explicit:
        _zone(explicit, "timezone")
        return explicit
    return value.timezone if isinstance(value, LocalTimeIn) else "UTC"


def _invitees(people: list[PersonIn]) -> tuple[Invitee, ...]:
    return tuple(Invitee(p.email, p.name) for p in people)


def _context(state: WebState, caller: Principal) -> ActionContext:
    factory = state.services.action_context
    if factory is None:
        raise ActionsUnavailableError(
            "This server has no CRM connection configured for actions.",
            hint="Enable a CRM in crm-meetings.toml and restart `crm-meetings web serve`.",
        )
    return factory(caller)


@router.post("/meetings", response_model=ActionOut, status_code=201)
def schedule(body: ScheduleIn, key: IdempotencyKey, caller: Caller, state: State) -> ActionOut:
    """Schedule: online meeting, CRM record, invitations queued."""
    request = actions.ScheduleRequest(
        idempotency_key=key,
        subject=body.subject,
        start=_instant(body.start, "start"),
        end=_instant(body.end, "end"),
        timezone=_zone_name(body.start, body.timezone),
        invitees=_invitees(body.invitees),
        related=tuple(RecordRef(r.object_type, r.record_id) for r in body.related),
        description=body.description,
        location=body.location,
        record_type=body.record_type or None,
    )
    return ActionOut.of(actions.schedule(_context(state, caller), request))


@router.patch("/meetings/{meeting_id}", response_model=ActionOut)
def edit(
    meeting_id: MeetingId, body: EditIn, key: IdempotencyKey, caller: Caller, state: State
) -> ActionOut:
    """Save and send update: only the fields given change."""
    fields: dict[str, Any] = {
        "subject": body.subject,
        "description": body.description,
        "location": body.location,
        "start": None if body.start is None else _instant(body.start, "start"),
        "end": None if body.end is None else _instant(body.end, "end"),
        "invitees": None if body.invitees is None else _invitees(body.invitees),
    }
    request = actions.EditRequest(
        idempotency_key=key, meeting=meeting_id, expected_version=body.expected_version, **fields
    )
    return ActionOut.of(actions.edit(_context(state, caller), request))


@router.post("/meetings/{meeting_id}/cancel", response_model=ActionOut)
def cancel(meeting_id: MeetingId, key: IdempotencyKey, caller: Caller, state: State) -> ActionOut:
    """Cancel: the CRM record stays (cancelled); every invitee gets a CANCEL."""
    request = actions.CancelRequest(idempotency_key=key, meeting=meeting_id)
    return ActionOut.of(actions.cancel(_context(state, caller), request))


@router.delete("/meetings/{meeting_id}", response_model=ActionOut)
def delete(meeting_id: MeetingId, key: IdempotencyKey, caller: Caller, state: State) -> ActionOut:
    """Delete: the CRM record goes; every invitee gets a CANCEL."""
    request = actions.DeleteRequest(idempotency_key=key, meeting=meeting_id)
    return ActionOut.of(actions.delete(_context(state, caller), request))
