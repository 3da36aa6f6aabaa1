"""The JSON the API speaks, as pydantic models (they are what /openapi.json publishes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.model import Meeting, Participant, Session
from crm_meetings.store import SyncRun

__all__ = [
    "ApiKeyCreated",
    "ApiKeyIn",
    "ApiKeyOut",
    "CheckOut",
    "ErrorOut",
    "InviteeOut",
    "MeOut",
    "MeetingDetail",
    "MeetingOut",
    "MySyncOut",
    "OutboxOut",
    "OutboxRetryIn",
    "ParticipantOut",
    "RecordTypeOut",
    "RecordTypesIn",
    "RetryOut",
    "RunOut",
    "SessionOut",
    "SyncOut",
    "SyncScheduleIn",
    "SyncScheduleOut",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorOut(_Out):
    """Every error: a stable ``code``, a human ``message`` and what to do (``hint``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    code: str
    message: str
    hint: str


class MeOut(_Out):
    crm: str
    org_id: str
    user_id: str
    email: str | None
    profile: str | None
    record: str | None
    admin: bool
    via: str


class InviteeOut(_Out):
    email: str
    name: str
    response: str
    optional: bool
    crm_relation: str | None


class MeetingOut(_Out):
    id: str
    crm: str
    crm_record_id: str | None
    subject: str
    description: str
    location: str
    join_url: str | None
    start: datetime
    end: datetime
    timezone: str
    organizer_email: str
    organizer_name: str
    invitees: list[InviteeOut]
    related: list[str]
    record_type: str | None
    status: str
    sequence: int
    version: int

    @classmethod
    def of(cls, meeting: Meeting) -> MeetingOut:
        return cls(**_meeting_fields(meeting))


def _meeting_fields(meeting: Meeting) -> dict[str, Any]:
    return {
        "id": meeting.id,
        "crm": meeting.crm.value,
        "crm_record_id": meeting.crm_record_id,
        "subject": meeting.subject,
        "description": meeting.description,
        "location": meeting.location,
        "join_url": meeting.join_url,
        "start": meeting.start,
        "end": meeting.end,
        "timezone": meeting.timezone,
        "organizer_email": meeting.organizer.email,
        "organizer_name": meeting.organizer.name,
        "invitees": [
            InviteeOut(
                email=i.email,
                name=i.name,
                response=i.response.value,
                optional=i.optional,
                crm_relation=str(i.crm_relation) if i.crm_relation else None,
            )
            for i in meeting.invitees
        ],
        "related": [str(ref) for ref in meeting.related],
        "record_type": meeting.record_type,
        "status": meeting.status.value,
        "sequence": meeting.sequence,
        "version": meeting.version,
    }


class ParticipantOut(_Out):
    name: str
    email: str | None
    join_time: datetime
    leave_time: datetime
    minutes: int

    @classmethod
    def of(cls, p: Participant) -> ParticipantOut:
        return cls(
            name=p.name,
            email=p.email,
            join_time=p.join_time,
            leave_time=p.leave_time,
            minutes=round(p.seconds_attended / 60),
        )


class SessionOut(_Out):
    provider: str
    provider_session_id: str
    start: datetime
    end: datetime
    participants: list[ParticipantOut]

    @classmethod
    def of(cls, s: Session) -> SessionOut:
        return cls(
            provider=s.provider,
            provider_session_id=s.provider_session_id,
            start=s.start,
            end=s.end,
            participants=[ParticipantOut.of(p) for p in s.participants],
        )


class MeetingDetail(MeetingOut):
    sessions: list[SessionOut]

    @classmethod
    def with_sessions(cls, meeting: Meeting, sessions: list[Session]) -> MeetingDetail:
        return cls(**_meeting_fields(meeting), sessions=[SessionOut.of(s) for s in sessions])


class SyncOut(_Out):
    meeting_id: str
    sessions: list[SessionOut]


class MySyncOut(_Out):
    organizer: str
    meetings: int
    with_sessions: int
    without_sessions: list[str]


class RunOut(_Out):
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    organizer: str | None
    meeting_id: str | None
    meetings_seen: int
    sessions_written: int
    participants_written: int
    api_calls: int
    errors: list[str]

    @classmethod
    def of(cls, run: SyncRun) -> RunOut:
        c = run.counters
        return cls(
            id=run.id,
            kind=run.kind,
            status=run.status.value,
            started_at=run.started_at,
            finished_at=run.finished_at,
            organizer=run.organizer,
            meeting_id=run.meeting_id,
            meetings_seen=c.meetings_seen,
            sessions_written=c.sessions_written,
            participants_written=c.participants_written,
            api_calls=c.api_calls_total,
            errors=list(c.errors),
        )


class OutboxOut(_Out):
    id: int
    status: str
    recipient: str
    subject: str
    method: str
    sequence: int
    attempts: int
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, e: OutboxMessageRow) -> OutboxOut:
        return cls(
            id=e.id,
            status=e.status,
            recipient=e.recipient,
            subject=e.subject,
            method=e.method,
            sequence=e.sequence,
            attempts=e.attempts,
            next_attempt_at=e.next_attempt_at,
            sent_at=e.sent_at,
            last_error=e.last_error,
        )


class OutboxRetryIn(BaseModel):
    ids: list[int] | None = Field(default=None, description="Outbox ids; all failed if absent.")


class RetryOut(_Out):
    retried: int


class SyncScheduleIn(BaseModel):
    hour: int = Field(ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    timezone: str = Field(min_length=1, max_length=64)


class SyncScheduleOut(_Out):
    hour: int
    minute: int
    timezone: str
    next_run_time: datetime | None


class RecordTypeOut(_Out):
    id: str
    name: str
    visible: bool


class RecordTypesIn(BaseModel):
    hidden: list[str] = Field(max_length=500)


class CheckOut(_Out):
    name: str
    ok: bool
    detail: str
    fix: str


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)


class ApiKeyOut(_Out):
    id: int
    name: str
    prefix: str
    actor_email: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once; only its hash is kept.")
