"""The FastAPI application: JSON API, CRM entry points, pages, one error boundary.

``create_app(settings, store=..., clock=..., services=...)`` builds it; ``crm-meetings
web serve`` and the worker serve it with uvicorn. Errors are translated once, here:
a :class:`~crm_meetings.errors.CrmMeetingsError` becomes its ``http_status`` with
``{code, message, hint, ...}``; request validation errors become 422 in the same shape.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Final

import jinja2
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_meetings import __version__
from crm_meetings.config import Settings
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.redaction import redact
from crm_meetings.store import Clock, Store
from crm_meetings.store.repositories import utc_now
from crm_meetings.web import actions_api, api, booking, contacts_api, pages
from crm_meetings.web.deps import WebState
from crm_meetings.web.orgs import OrgBinding
from crm_meetings.web.replay import StoredReplayGuard
from crm_meetings.web.security import Authenticator, SessionCodec
from crm_meetings.web.services import WebServices

__all__ = ["create_app", "error_body"]

HERE: Final = Path(__file__).parent
_log = structlog.get_logger(__name__)


def create_app(
    settings: Settings,
    *,
    store: Store,
    clock: Clock = utc_now,
    services: WebServices | None = None,
) -> FastAPI:
    """The web application over ``store``; ``services`` wires in the worker's parts."""
    services = services or WebServices()
    secret = settings.web.session_secret
    session_secret = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
    sessions = SessionCodec(session_secret, ttl=services.session_ttl, clock=clock)
    auth = Authenticator(
        settings.web,
        store=store,
        clock=clock,
        sessions=sessions,
        replay=services.replay or StoredReplayGuard(store),
        admins=services.admins,
        orgs=OrgBinding.from_settings(settings, services.connected),
    )
    templates = Jinja2Templates(
        env=jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False
        )
    )
    app = FastAPI(
        title="crm-meetings",
        version=__version__,
        description="Meetings on CRM record pages: schedule, edit, share, cancel, sync.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.web = WebState(settings, store, clock, services, auth, templates)
    app.include_router(api.router)
    app.include_router(actions_api.router)
    app.include_router(booking.api)
    app.include_router(contacts_api.router)
    app.include_router(booking.public)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(CrmMeetingsError, _crm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app


def error_body(code: str, message: str, hint: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "hint": hint, **extra}


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def _respond(request: Request, status: int, body: dict[str, Any]) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if _wants_html(request):
        state: WebState = request.app.state.web
        return state.templates.TemplateResponse(
            request, "error.html", {"error": body}, status_code=status, headers=headers
        )
    return JSONResponse(body, status_code=status, headers=headers)


async def _crm_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CrmMeetingsError)
    if exc.http_status >= 500:
        _log.error("request failed", path=request.url.path, error=str(exc))
    return _respond(request, exc.http_status, exc.to_dict())


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "field": ".".join(str(part) for part in error.get("loc", ())),
            "message": redact(str(error.get("msg", ""))),
        }
        for error in exc.errors()
    ]
    first = problems[0] if problems else {"field": "request", "message": "is not valid"}
    body = error_body(
        "validation_error",
        f"{first['field']}: {first['message']}",
        "Correct the request and try again; /openapi.json describes every field.",
        field=first["field"],
        errors=problems,
    )
    return _respond(request, 422, body)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    hint = "See /openapi.json for the available endpoints."
    body = error_body(code, str(exc.detail), hint)
    response = _respond(request, exc.status_code, body)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
