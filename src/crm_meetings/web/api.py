"""``/api/v1``: meetings, sessions, sync, runs, and the admin's settings — org-scoped."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import PlainTextResponse

from crm_meetings.calendar import ics
from crm_meetings.calendar.invitation import invitation_text
from crm_meetings.calendar.outbox import OutboxStatus
from crm_meetings.commands import run_check
from crm_meetings.errors import NoSessionExistsError, ValidationError
from crm_meetings.model import Meeting, RecordRef, Session
from crm_meetings.sync.schedule import NIGHTLY_JOB_ID, nightly_trigger, schedule_nightly
from crm_meetings.web import data
from crm_meetings.web.deps import Caller, State, WebState
from crm_meetings.web.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    CheckOut,
    ErrorOut,
    MeetingDetail,
    MeetingOut,
    MeOut,
    MySyncOut,
    OutboxOut,
    OutboxRetryIn,
    RecordTypeOut,
    RecordTypesIn,
    RetryOut,
    RunOut,
    SessionOut,
    SyncOut,
    SyncScheduleIn,
    SyncScheduleOut,
)
from crm_meetings.web.security import Principal
from crm_meetings.web.tables import ApiKeyRow

__all__ = ["ERROR_RESPONSES", "current_schedule", "record_types_for", "router"]

ERROR_RESPONSES: Final[dict[int | str, dict[str, object]]] = {
    status: {"model": ErrorOut} for status in (401, 403, 404, 409, 422)
}
router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

MeetingId = Annotated[str, Path(min_length=1, max_length=255)]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get("/me", response_model=MeOut, tags=["session"])
def me(caller: Caller) -> MeOut:
    """Who the verified caller is."""
    c = caller.caller
    return MeOut(
        crm=c.crm.value,
        org_id=c.org_id,
        user_id=c.user_id,
        email=c.user_email,
        profile=c.profile,
        record=str(c.record) if c.record else None,
        admin=caller.admin,
        via=caller.method.value,
    )


# --- meetings -------------------------------------------------------------------------


@router.get(
    "/records/{object_type}/{record_id}/meetings",
    response_model=list[MeetingOut],
    tags=["meetings"],
)
def record_meetings(
    object_type: MeetingId, record_id: MeetingId, caller: Caller, state: State
) -> list[MeetingOut]:
    """The meetings of one CRM record (related to it or inviting it), by start."""
    ref = RecordRef(object_type, record_id)
    with state.store.reading() as uow:
        meetings = uow.meetings.list_for_record(ref, org_id=caller.org_id)
    return [MeetingOut.of(m) for m in meetings]


@router.get("/meetings/{meeting_id}", response_model=MeetingDetail, tags=["meetings"])
def read_meeting(meeting_id: MeetingId, caller: Caller, state: State) -> MeetingDetail:
    """One meeting with its sessions and their participants."""
    with state.store.reading() as uow:
        meeting = data.meeting_in_org(uow, caller.org_id, meeting_id)
        sessions = uow.sessions.list_for_meeting(meeting.id)
    return MeetingDetail.with_sessions(meeting, sessions)


def _meeting(state: WebState, caller: Principal, meeting_id: str) -> Meeting:
    with state.store.reading() as uow:
        return data.meeting_in_org(uow, caller.org_id, meeting_id)


@router.get(
    "/meetings/{meeting_id}/invitation", response_class=PlainTextResponse, tags=["meetings"]
)
def copy_invitation(meeting_id: MeetingId, caller: Caller, state: State) -> PlainTextResponse:
    """The invitation as text, for "Copy invitation"."""
    return PlainTextResponse(invitation_text(_meeting(state, caller, meeting_id)))


@router.get(
    "/meetings/{meeting_id}/ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
    tags=["meetings"],
)
def add_to_calendar(meeting_id: MeetingId, caller: Caller, state: State) -> Response:
    """An .ics file for "Add to Outlook" (same UID and SEQUENCE as the invitations)."""
    meeting = _meeting(state, caller, meeting_id)
    body = ics.add_to_calendar(meeting, state.clock())
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="meeting-{meeting.id}.ics"'},
    )


# --- sync -----------------------------------------------------------------------------


def _synced(state: WebState, caller: Principal, meeting: Meeting) -> list[Session]:
    """The meeting's sessions after syncing it (none when it never ran)."""
    sync = state.services.sync_meeting
    if sync is None:
        with state.store.reading() as uow:
            return uow.sessions.list_for_meeting(meeting.id)
    try:
        return list(sync(caller.caller, meeting))
    except NoSessionExistsError:
        return []


@router.post("/meetings/{meeting_id}/sync", response_model=SyncOut, tags=["sync"])
def sync_meeting(meeting_id: MeetingId, caller: Caller, state: State) -> SyncOut:
    """Sync one meeting's history now; 404 ``no_session_exists`` if it never ran."""
    meeting = _meeting(state, caller, meeting_id)
    sessions = _synced(state, caller, meeting)
    if not sessions:
        raise NoSessionExistsError(meeting.id)
    return SyncOut(meeting_id=meeting.id, sessions=[SessionOut.of(s) for s in sessions])


@router.post("/sync", response_model=MySyncOut, tags=["sync"])
def sync_my_meetings(caller: Caller, state: State) -> MySyncOut:
    """Sync the caller's own meetings; says which have no session yet."""
    organizer = caller.actor().email
    by_organizer = state.services.sync_organizer
    if by_organizer is not None:
        by_organizer(caller.caller, organizer)
    with state.store.transaction() as uow:
        meetings = uow.meetings.list_by_organizer(organizer, org_id=caller.org_id)
        counts = {m.id: len(uow.sessions.list_for_meeting(m.id)) for m in meetings}
    if by_organizer is None and state.services.sync_meeting is not None:
        counts = {m.id: len(_synced(state, caller, m)) for m in meetings}
    missing = [mid for mid, n in counts.items() if n == 0]
    return MySyncOut(
        organizer=organizer,
        meetings=len(meetings),
        with_sessions=len(meetings) - len(missing),
        without_sessions=missing,
    )


@router.get("/runs", response_model=list[RunOut], tags=["sync"])
def runs(caller: Caller, state: State, limit: Limit = 20) -> list[RunOut]:
    """The org's latest sync runs, newest first."""
    with state.store.reading() as uow:
        found = uow.runs.list_recent(limit, org_id=caller.org_id)
    return [RunOut.of(run) for run in found]


# --- record types ---------------------------------------------------------------------


def record_types_for(state: WebState, caller: Principal) -> list[RecordTypeOut]:
    """Every record type of the caller's CRM, marked visible unless the admin hid it."""
    with state.store.reading() as uow:
        hidden = set(
            (data.get_preference(uow, caller.org_id, data.HIDDEN_RECORD_TYPES) or {}).get(
                "hidden", []
            )
        )
        from_crm = state.services.record_types
        stored = data.stored_record_types(uow, caller.org_id) if from_crm is None else []
    # the CRM's own list is read outside any database transaction
    known = list(from_crm(caller.caller)) if from_crm is not None else stored
    return [RecordTypeOut(id=t.id, name=t.name, visible=t.id not in hidden) for t in known]


@router.get("/record-types", response_model=list[RecordTypeOut], tags=["meetings"])
def visible_record_types(caller: Caller, state: State) -> list[RecordTypeOut]:
    """The record types reps may pick when they schedule."""
    return [t for t in record_types_for(state, caller) if t.visible]


# --- admin ----------------------------------------------------------------------------


@router.get("/admin/health", response_model=list[CheckOut], tags=["admin"])
def health(caller: Caller, state: State) -> list[CheckOut]:
    """Connection health: the ``doctor`` checks."""
    caller.require_admin()
    results: list[CheckOut] = []
    for check in state.services.checks:
        for result in run_check(check, state.settings):
            results.append(
                CheckOut(name=result.name, ok=result.ok, detail=result.detail, fix=result.fix)
            )
    return results


def current_schedule(state: WebState) -> SyncScheduleOut:
    """The nightly sync time: the admin's saved choice, else the settings."""
    with state.store.reading() as uow:
        saved = data.get_preference(uow, data.DEPLOYMENT, data.SYNC_SCHEDULE) or {}
    sync = state.settings.sync
    hour = int(saved.get("hour", sync.hour))
    minute = int(saved.get("minute", sync.minute))
    timezone = str(saved.get("timezone", sync.timezone))
    return SyncScheduleOut(
        hour=hour,
        minute=minute,
        timezone=timezone,
        next_run_time=_next_run(state, hour, minute, timezone),
    )


def _next_run(state: WebState, hour: int, minute: int, timezone: str) -> datetime | None:
    scheduler = state.services.scheduler
    if scheduler is not None:
        job = scheduler.get_job(NIGHTLY_JOB_ID)
        when = getattr(job, "next_run_time", None) if job is not None else None
        if isinstance(when, datetime):
            return when
    fire: datetime | None = nightly_trigger(hour, minute, timezone).get_next_fire_time(
        None, state.clock()
    )
    return fire


@router.get("/admin/sync-schedule", response_model=SyncScheduleOut, tags=["admin"])
def get_sync_schedule(caller: Caller, state: State) -> SyncScheduleOut:
    caller.require_admin()
    return current_schedule(state)


@router.put("/admin/sync-schedule", response_model=SyncScheduleOut, tags=["admin"])
def put_sync_schedule(body: SyncScheduleIn, caller: Caller, state: State) -> SyncScheduleOut:
    """Save the nightly sync time and reschedule the worker's job (no restart)."""
    caller.require_admin()
    try:
        ZoneInfo(body.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            "timezone",
            f"{body.timezone!r} is not an IANA timezone",
            hint="Use a name such as Europe/Paris or UTC.",
        ) from exc
    nightly_trigger(body.hour, body.minute, body.timezone)
    by = caller.caller.user_email or caller.caller.user_id
    with state.store.transaction() as uow:
        data.set_preference(uow, data.DEPLOYMENT, data.SYNC_SCHEDULE, body.model_dump(), by=by)
    if state.services.scheduler is not None:
        schedule_nightly(
            state.services.scheduler,
            hour=body.hour,
            minute=body.minute,
            timezone=body.timezone,
            func=state.services.nightly_func,
        )
    return current_schedule(state)


@router.get("/admin/record-types", response_model=list[RecordTypeOut], tags=["admin"])
def get_record_types(caller: Caller, state: State) -> list[RecordTypeOut]:
    caller.require_admin()
    return record_types_for(state, caller)


@router.put("/admin/record-types", response_model=list[RecordTypeOut], tags=["admin"])
def put_record_types(body: RecordTypesIn, caller: Caller, state: State) -> list[RecordTypeOut]:
    """Choose which record types reps do not see when they schedule."""
    caller.require_admin()
    hidden = sorted({name.strip() for name in body.hidden if name.strip()})
    by = caller.caller.user_email or caller.caller.user_id
    with state.store.transaction() as uow:
        data.set_preference(uow, caller.org_id, data.HIDDEN_RECORD_TYPES, {"hidden": hidden}, by=by)
    return record_types_for(state, caller)


@router.get("/admin/outbox", response_model=list[OutboxOut], tags=["admin"])
def outbox(
    caller: Caller, state: State, status: OutboxStatus | None = None, limit: Limit = 50
) -> list[OutboxOut]:
    """The org's queued, sent and failed mail, newest first."""
    caller.require_admin()
    with state.store.reading() as uow:
        rows = data.outbox_for_org(uow, caller.org_id, status=status, limit=limit)
        return [OutboxOut.of(row) for row in rows]


@router.post("/admin/outbox/retry", response_model=RetryOut, tags=["admin"])
def outbox_retry(body: OutboxRetryIn, caller: Caller, state: State) -> RetryOut:
    """Queue the org's failed messages again (all, or the listed ids)."""
    caller.require_admin()
    with state.store.transaction() as uow:
        return RetryOut(retried=data.retry_outbox(uow, caller.org_id, body.ids))


def _key_out(row: ApiKeyRow) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "actor_email": row.actor_email,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


@router.get("/admin/api-keys", response_model=list[ApiKeyOut], tags=["admin"])
def api_keys(caller: Caller, state: State) -> list[ApiKeyOut]:
    caller.require_admin()
    with state.store.reading() as uow:
        return [
            ApiKeyOut.model_validate(_key_out(r)) for r in data.list_api_keys(uow, caller.org_id)
        ]


@router.post("/admin/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["admin"])
def create_api_key(body: ApiKeyIn, caller: Caller, state: State) -> ApiKeyCreated:
    """A new server-to-server key acting as the caller; the key is shown only here."""
    caller.require_admin()
    actor = caller.actor().email
    with state.store.transaction() as uow:
        row, key = data.create_api_key(
            uow,
            caller.org_id,
            crm=caller.caller.crm.value,
            name=body.name,
            actor_email=actor,
            by=actor,
        )
        return ApiKeyCreated.model_validate({**_key_out(row), "key": key})


@router.delete("/admin/api-keys/{key_id}", response_model=ApiKeyOut, tags=["admin"])
def revoke_api_key(key_id: int, caller: Caller, state: State) -> ApiKeyOut:
    """Revoke a key at once; it is kept (revoked) for the record."""
    caller.require_admin()
    with state.store.transaction() as uow:
        row = data.revoke_api_key(uow, caller.org_id, key_id, at=state.clock())
        return ApiKeyOut.model_validate(_key_out(row))
