"""The demo's web app: the panel and the admin page, served against the sandbox.

:func:`serve` starts the app (``crm_meetings.web``) on uvicorn in a thread, on a free port
of 127.0.0.1, with the demo's store and the clients the other steps use, bound to the
sandbox's orgs like a real installation. A demo-only sign-in route stands in for the
org's Deluge function: ``GET /demo/sign-in?page=panel|admin`` mints a fresh Zoho widget
token for the demo rep on a sandboxed Zoho record and sends the browser to the real entry
point, ``/zoho/panel?token=…``, which verifies it and opens the session. The route exists
only in the demo's app.

:meth:`DemoWeb.check` opens each URL once with a real HTTP GET (following the redirects,
keeping the session cookie) and returns what answered.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import RedirectResponse

from crm_meetings.demo.system import CRMS, PROVIDERS, DemoSystem
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.model import CrmKind
from crm_meetings.store.repositories import utc_now
from crm_meetings.web.auth import sign_widget_token
from crm_meetings.web.live import live_app
from crm_meetings.web.wiring import Clients

__all__ = ["PAGES", "DemoWeb", "get_signed_in", "serve", "wait_for_interrupt"]

HOST: Final = "127.0.0.1"
STARTUP_TIMEOUT: Final = 10.0
Page = Literal["panel", "admin"]
#: what each page must show once signed in (its heading)
PAGES: Final[dict[Page, str]] = {"panel": "<h1>Meetings</h1>", "admin": "<h1>crm-meetings admin"}


@dataclass
class DemoWeb:
    """The running web app; :meth:`stop` ends it (idempotent)."""

    base: str
    server: uvicorn.Server
    thread: threading.Thread
    record: str  # the Zoho record the panel opens on, "Module/id"
    urls: dict[Page, str] = field(default_factory=dict)

    def check(self) -> dict[Page, int]:
        """One real GET per page, redirects followed with the session cookie kept."""
        found: dict[Page, int] = {}
        with httpx.Client(timeout=30) as client:
            for page, url in self.urls.items():
                response = get_signed_in(client, url)
                if response.status_code != 200 or PAGES[page] not in response.text:
                    raise CrmMeetingsError(
                        f"{url} answered {response.status_code} without the {page} page",
                        hint="See the demo's output above for the server's error.",
                    )
                found[page] = len(response.content)
        return found

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT)


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM; the previous handlers are put back.

    Installed explicitly: a process started in the background may inherit SIGINT ignored.
    """
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.2):
            pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def get_signed_in(client: httpx.Client, url: str, hops: int = 5) -> httpx.Response:
    """GET ``url`` following redirects by hand: the session cookie is ``Secure``, which a
    browser sends to http://127.0.0.1 (a trustworthy origin) but httpx's jar would not."""
    cookies: dict[str, str] = {}
    for _ in range(hops):
        header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        response = client.get(url, headers={"Cookie": header} if header else None)
        cookies.update(response.cookies.items())
        if not response.is_redirect:
            return response
        url = str(response.url.join(response.headers["location"]))
    raise CrmMeetingsError(f"{url}: more than {hops} redirects")


def _sign_in_route(system: DemoSystem, record: tuple[str, str]) -> APIRouter:
    """``/demo/sign-in``: what the org's Deluge function would hand the Zoho widget."""
    router = APIRouter(include_in_schema=False)
    secret = system.settings.web.zoho_widget_secret
    org = system.settings.zoho.org_id
    if secret is None or org is None:
        raise CrmMeetingsError(
            "the demo settings have no [web] zoho_widget_secret or [zoho] org_id"
        )

    @router.get("/demo/sign-in")
    def sign_in(page: Annotated[Page, Query()] = "panel") -> RedirectResponse:
        token = sign_widget_token(
            secret.get_secret_value().encode(),
            org=org,
            user="demo-rep",
            email=system.organizer.email,
            module=record[0],
            record=record[1],
            now=utc_now(),
        )
        return RedirectResponse(f"/zoho/panel?page={page}&token={token}", status_code=303)

    return router


def _app(system: DemoSystem, record: tuple[str, str]) -> FastAPI:
    clients = Clients(  # the demo's clients, already built; the demo closes them
        lambda crm: system.connectors[crm.value],
        lambda name: system.providers[name],
        crms=[CrmKind(crm) for crm in CRMS],
        providers=PROVIDERS,
    )
    from crm_meetings.cli import DOCTOR_CHECKS  # loaded: the demo runs from the CLI

    admins = frozenset({system.organizer.email.lower()})
    app = live_app(
        system.settings, system.store, clients, admins=admins, checks=tuple(DOCTOR_CHECKS)
    )
    app.include_router(_sign_in_route(system, record))
    return app


def serve(system: DemoSystem) -> DemoWeb:
    """Serve the web app on a free port; the panel opens on the rep's Zoho record page."""
    where = system.record_page("zoho")
    record = (where.object_type, where.record_id)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        _app(system, record),
        host=HOST,
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-web", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise CrmMeetingsError("the demo's web app did not start")
        time.sleep(0.01)
    base = f"http://{HOST}:{port}"
    web = DemoWeb(base, server, thread, f"{record[0]}/{record[1]}")
    web.urls = {page: f"{base}/demo/sign-in?page={page}" for page in PAGES}
    return web
