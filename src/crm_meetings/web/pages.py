"""CRM entry points (verify, then open a session) and the server-rendered pages.

- ``POST /salesforce/canvas`` — the Canvas app's signed request (form field
  ``signed_request``); ``?page=admin`` opens the admin page instead of the panel.
- ``GET|POST /hubspot/panel`` — a HubSpot-signed (v3) call.
- ``GET /zoho/panel?token=…`` — a Zoho widget token from the org's Deluge function.
- ``GET /panel`` — the record-page panel; ``GET /admin`` — the admin page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crm_meetings.calendar.outbox import OutboxStatus
from crm_meetings.model import Invitee, Meeting, MeetingStatus, Session
from crm_meetings.web import api, data
from crm_meetings.web.auth import CallerContext
from crm_meetings.web.deps import Caller, State, WebState, incoming
from crm_meetings.web.schemas import OutboxOut, RunOut
from crm_meetings.web.security import SESSION_COOKIE

__all__ = ["PanelView", "router"]

router = APIRouter(include_in_schema=False)
Page = Literal["panel", "admin"]


def _open_session(state: WebState, caller: CallerContext, page: Page) -> Response:
    """Sign a session for ``caller`` and send the browser to ``page`` (303)."""
    value, _ = state.auth.sessions.issue(caller, admin=state.auth.is_admin(caller.user_email))
    response = RedirectResponse(f"/{page}", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(state.auth.sessions.ttl.total_seconds()),
        httponly=True,
        secure=True,
        samesite="none",  # the page is framed by the CRM: a third-party context
        path="/",
    )
    return response


@router.post("/salesforce/canvas")
def salesforce_canvas(
    state: State,
    signed_request: Annotated[str, Form(max_length=64_000)],
    page: Annotated[Page, Query()] = "panel",
) -> Response:
    """Salesforce POSTs the Canvas signed request here when the record page loads."""
    return _open_session(state, state.auth.canvas(signed_request), page)


@router.api_route("/hubspot/panel", methods=["GET", "POST"])
async def hubspot_panel(request: Request, page: Page = "panel") -> Response:
    """A HubSpot-signed call (v3) opens the panel for the portal, user and record it names."""
    state: WebState = request.app.state.web
    view = incoming(request, await request.body())
    caller = await run_in_threadpool(state.auth.hubspot, view)
    return _open_session(state, caller, page)


@router.get("/zoho/panel")
def zoho_panel(
    state: State, token: Annotated[str, Query(max_length=4096)], page: Page = "panel"
) -> Response:
    """The Zoho widget opens this with a fresh token from the org's Deluge function."""
    return _open_session(state, state.auth.zoho(token), page)


# --- the record-page panel ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PanelView:
    """A record's meetings as the panel groups them."""

    upcoming: list[Meeting]
    past: list[Meeting]
    cancelled: list[Meeting]
    sessions: dict[str, list[Session]]
    contacts: list[Invitee]

    @classmethod
    def build(
        cls, meetings: Sequence[Meeting], sessions: dict[str, list[Session]], now: datetime
    ) -> PanelView:
        live = [m for m in meetings if m.status is MeetingStatus.SCHEDULED]
        contacts: dict[str, Invitee] = {}
        for meeting in meetings:
            for invitee in meeting.invitees:
                contacts.setdefault(invitee.email, invitee)
        return cls(
            upcoming=[m for m in live if m.end >= now],
            past=sorted((m for m in live if m.end < now), key=lambda m: m.start, reverse=True),
            cancelled=[m for m in meetings if m.status is MeetingStatus.CANCELLED],
            sessions=sessions,
            contacts=sorted(contacts.values(), key=lambda i: (i.name.lower(), i.email)),
        )


def _when(meeting: Meeting) -> str:
    start, end = meeting.local_start, meeting.local_end
    return f"{start:%a %d %b %Y, %H:%M}–{end:%H:%M} ({meeting.timezone})"


def _local_input(meeting: Meeting, which: Literal["start", "end"]) -> str:
    value = meeting.local_start if which == "start" else meeting.local_end
    return f"{value:%Y-%m-%dT%H:%M}"


@router.get("/panel")
def panel(request: Request, caller: Caller, state: State) -> Response:
    """The meetings of the record the panel was opened on."""
    record = caller.caller.record
    meetings: list[Meeting] = []
    sessions: dict[str, list[Session]] = {}
    with state.store.reading() as uow:
        if record is not None:
            meetings = uow.meetings.list_for_record(record, org_id=caller.org_id)
            sessions = uow.sessions.list_for_meetings(m.id for m in meetings)
    context: dict[str, Any] = {
        "caller": caller,
        "record": record,
        "view": PanelView.build(meetings, sessions, state.clock()),
        "record_types": [t for t in api.record_types_for(state, caller) if t.visible],
        "when": _when,
        "local_input": _local_input,
        "default_timezone": state.settings.sync.timezone,
    }
    return state.templates.TemplateResponse(request, "panel.html", context)


@router.get("/admin")
def admin(request: Request, caller: Caller, state: State) -> Response:
    """Connections, the nightly sync time, last runs, the outbox and record types."""
    caller.require_admin()
    with state.store.reading() as uow:
        runs = [RunOut.of(r) for r in uow.runs.list_recent(10, org_id=caller.org_id)]
        outbox = [
            OutboxOut.of(row)
            for row in data.outbox_for_org(uow, caller.org_id, status=None, limit=25)
        ]
    context: dict[str, Any] = {
        "caller": caller,
        "checks": api.health(caller, state),
        "schedule": api.current_schedule(state),
        "runs": runs,
        "outbox": outbox,
        "failed": sum(1 for o in outbox if o.status == OutboxStatus.FAILED.value),
        "record_types": api.record_types_for(state, caller),
    }
    return state.templates.TemplateResponse(request, "admin.html", context)
