"""FastAPI dependencies: the app's shared state and the verified caller of a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from crm_meetings.config import Settings
from crm_meetings.store import Clock, Store
from crm_meetings.web.security import Authenticator, IncomingRequest, Principal
from crm_meetings.web.services import WebServices

__all__ = ["Caller", "State", "WebState", "principal", "web_state"]


@dataclass(frozen=True, slots=True)
class WebState:
    """Everything a request handler may use, built once by ``create_app``."""

    settings: Settings
    store: Store
    clock: Clock
    services: WebServices
    auth: Authenticator
    templates: Jinja2Templates


def web_state(request: Request) -> WebState:
    return cast(WebState, request.app.state.web)


def incoming(request: Request, body: bytes) -> IncomingRequest:
    """The framework-free view of ``request`` that authentication checks."""
    query = request.url.query
    return IncomingRequest(
        method=request.method,
        url=str(request.url),
        path_and_query=request.url.path + (f"?{query}" if query else ""),
        headers=dict(request.headers),
        cookies=dict(request.cookies),
        body=body,
    )


async def principal(request: Request) -> Principal:
    """The verified caller (401 without proof, 403 for a session request without CSRF)."""
    body = await request.body()
    state = web_state(request)
    return await run_in_threadpool(state.auth.authenticate, incoming(request, body))


State = Annotated[WebState, Depends(web_state)]
Caller = Annotated[Principal, Depends(principal)]
