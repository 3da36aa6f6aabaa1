"""The ASGI wrapper the core puts around every emulator app: accounting, faults, admin.

For each HTTP request :class:`SandboxMiddleware`

1. hands ``/__sandbox__/…`` to the admin app (never counted, never faulted);
2. resolves the route template the request matches (``/sobjects/Event/{id}``; the raw
   path when no route matches);
3. asks :class:`~crm_meetings.sandbox.base.Faults` what to do, sleeps the latency, then
   answers with the emulator's own fault response, drops the connection, calls the app
   but holds its answer until the client's read timeout passed (then drops), or calls the
   app;
4. records ``RecordedCall(vendor, template, method, status)`` as the response starts, so a
   client that has its answer can already read the count — status :data:`DROPPED` when
   the connection was dropped, :data:`TIMED_OUT` when the answer was held, 500 when the
   app raised before answering.

While the app answers, :func:`~crm_meetings.sandbox.base.current_request` names the
request's endpoint and method (so :class:`~crm_meetings.sandbox.base.Rejections` can be
scoped per endpoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_meetings.sandbox.base import (
    CURRENT_REQUEST,
    FaultKind,
    RecordedCall,
    SandboxEnv,
    VendorEmulator,
)

__all__ = [
    "ADMIN_PREFIX",
    "DROPPED",
    "TIMED_OUT",
    "SandboxMiddleware",
    "drop_connection",
    "route_template",
]

ADMIN_PREFIX = "/__sandbox__"
DROPPED = 0  # the status recorded for a request whose connection was dropped
#: the status recorded for a request carried out whose answer was held until the client
#: gave up (599: what proxies report for a network read timeout)
TIMED_OUT = 599
_TEMPLATE_CACHE_SIZE = 4096


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The path template of the route ``scope`` matches (mounts joined), else ``None``.

    A route that matches the path but not the method (a 405) still names the endpoint.
    """
    partial: str | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        template: str | None = getattr(route, "path", "")
        if isinstance(route, Mount):
            inner = route.routes
            template = (
                route.path + (route_template(inner, {**scope, **child}) or "")
                if inner
                else scope["path"]
            )
        if match is Match.FULL:
            return template
        partial = partial or template
    return partial


async def drop_connection(receive: Receive, send: Send) -> None:
    """Close the client's connection without any response (uvicorn).

    uvicorn hands the app its request cycle's bound ``send``; the cycle holds the transport.
    After aborting it, wait until the server has seen the disconnect, so that it does not
    answer "500, returned without starting response" itself.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if not isinstance(transport, asyncio.WriteTransport):
        raise ConnectionAbortedError("sandbox: connection dropped (no transport to abort)")
    transport.abort()
    async with asyncio.timeout(5):
        while (await receive())["type"] != "http.disconnect":
            pass


async def _held(message: Message) -> None:
    """The ``send`` of a request whose answer is held back: nothing is sent."""


class SandboxMiddleware:
    """One vendor's app with call accounting, fault injection and the admin endpoints."""

    def __init__(
        self, emulator: VendorEmulator, app: ASGIApp, env: SandboxEnv, *, admin: ASGIApp
    ) -> None:
        self.vendor = emulator.name
        self.emulator = emulator
        self.app = app
        self.env = env
        self.admin = admin
        self.routes: Sequence[BaseRoute] = getattr(app, "routes", ())
        self._templates: dict[tuple[str, str], str] = {}  # (method, path) -> endpoint

    def endpoint(self, scope: Scope) -> str:
        """The route template ``scope`` matches, else its raw path (cached per path)."""
        key = (scope["method"], scope["path"])
        found = self._templates.get(key)
        if found is None:
            if len(self._templates) >= _TEMPLATE_CACHE_SIZE:
                self._templates.clear()
            found = self._templates[key] = route_template(self.routes, scope) or scope["path"]
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            await self.admin(scope, receive, send)
            return
        method: str = scope["method"]
        endpoint = self.endpoint(scope)
        decision = self.env.faults.decide(self.vendor, endpoint, method)
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self.env.calls.record(RecordedCall(self.vendor, endpoint, method, status))

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])  # before the client can see the response
            await send(message)

        current = CURRENT_REQUEST.set((endpoint, method))  # for Rejections.check
        try:
            if decision.latency > 0:
                await asyncio.sleep(decision.latency)
            if decision.kind is FaultKind.DROP:
                record(DROPPED)
                await drop_connection(receive, send)
            elif decision.kind is FaultKind.TIMEOUT:
                record(TIMED_OUT)
                await self.app(scope, receive, _held)  # carried out; the answer never leaves
                await asyncio.sleep(decision.hold)
                await drop_connection(receive, send)
            elif decision.kind is not None:
                response = self.emulator.fault_response(
                    decision.kind, retry_after=decision.retry_after
                )
                await response(scope, receive, send_recorded)
            else:
                await self.app(scope, receive, send_recorded)
        finally:
            CURRENT_REQUEST.reset(current)
            record(500)  # the app raised before answering: the server sends a 500
