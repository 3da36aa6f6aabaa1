"""Serve the vendor emulators over HTTPS on 127.0.0.1: the :class:`Sandbox`.

::

    with Sandbox(["salesforce", "zoom"], seed=SeedSpec(seed=42, meetings=100)) as sandbox:
        client = httpx.Client(base_url=sandbox.url("zoom"), verify=sandbox.ssl_context())
        auth = {"Authorization": f"Bearer {sandbox.token('zoom')}"}
        client.get("/v2/users/me/meetings", headers=auth)
        assert sandbox.calls.count("zoom", endpoint="/v2/users/{userId}/meetings") == 1

Each emulator gets its own port (ephemeral unless ``port_base`` is set); every uvicorn
server runs in one background thread on one asyncio loop. On :meth:`Sandbox.start` the
core binds the ports, sets ``env.base_urls``, then calls each emulator's ``build_app(env)``
and, when a seed is given, ``load(generate(seed))`` — all before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from crm_meetings.errors import ConflictError
from crm_meetings.sandbox import registry
from crm_meetings.sandbox.admin import Controls, admin_app
from crm_meetings.sandbox.base import Faults, SandboxEnv, VendorEmulator
from crm_meetings.sandbox.middleware import SandboxMiddleware
from crm_meetings.sandbox.seed import SeedData, SeedSpec, generate
from crm_meetings.sandbox.tls import LocalCA, local_ca

__all__ = ["Sandbox"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (C parser), but an idle connection is aborted on shutdown.

    A plain ``close()`` of a TLS connection sends close_notify and waits for the client's;
    a pooled client connection that nobody reads never answers, so the socket would outlive
    the server (and its loop). A sandbox stops abruptly instead.
    """

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()


class _Server(uvicorn.Server):
    """uvicorn's server, stopped at once. uvicorn looks at ``should_exit`` every 0.1 s and
    then waits 0.1 s more for connections to wind down: 0.2 s per stop, paid by every test
    that starts a sandbox. Here :meth:`Sandbox.stop` wakes the main loop (``wake``), and
    shutdown aborts idle connections (:class:`_Protocol`) without the fixed wait; a request
    still running gets the grace time, then is cancelled."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.wake = asyncio.Event()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # the tick keeps the Date header current
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        running = set(self.server_state.tasks)
        if running:
            grace = self.config.timeout_graceful_shutdown
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
        for server in self.servers:
            await server.wait_closed()


def _url_of(sock: socket.socket, scheme: str) -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True, slots=True)
class _Listener:
    vendor: str
    scheme: str  # "https" | "http"
    sock: socket.socket
    server: _Server

    @property
    def url(self) -> str:
        return _url_of(self.sock, self.scheme)


def _bind(port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP; with proto 0, Nagle + delayed ACK cost ~40 ms per keep-alive request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        raise
    return sock


class Sandbox(Controls):
    """The emulators, served; also the Python API of the admin endpoints (:class:`Controls`).

    ``vendors`` names registry emulators (``None``: every available one) or passes emulator
    instances. ``http=True`` adds a plain-HTTP listener per vendor (:meth:`http_url`).
    """

    def __init__(
        self,
        vendors: Sequence[str | VendorEmulator] | None = None,
        *,
        seed: SeedSpec | None = None,
        env: SandboxEnv | None = None,
        http: bool = False,
        port_base: int = 0,
    ) -> None:
        emulators = (
            registry.create_all()
            if vendors is None
            else [registry.create(v) if isinstance(v, str) else v for v in vendors]
        )
        super().__init__(
            env or SandboxEnv(faults=Faults(seed.seed if seed else 0)),
            {emulator.name: emulator for emulator in emulators},
        )
        self.seed = seed
        self.data: SeedData | None = None
        self.http = http
        self.port_base = port_base
        self.ca: LocalCA = local_ca()
        self._listeners: list[_Listener] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None

    @property
    def ca_path(self) -> Path:
        """The test CA's certificate (PEM), for ``curl --cacert`` and ``verify=``."""
        return self.ca.ca_path

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting the sandbox's CA (httpx: ``verify=``)."""
        return self.ca.client_context()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def url(self, vendor: str) -> str:
        """``https://127.0.0.1:PORT`` of the vendor's emulator."""
        return self._url(vendor, "https")

    def http_url(self, vendor: str) -> str:
        """``http://127.0.0.1:PORT`` of the vendor's plain-HTTP listener (``http=True``)."""
        if not self.http:
            raise ConflictError(
                "the sandbox has no plain-HTTP listener", hint="Create it with http=True."
            )
        return self._url(vendor, "http")

    def _url(self, vendor: str, scheme: str) -> str:
        self.emulator(vendor)
        for listener in self._listeners:
            if listener.vendor == vendor and listener.scheme == scheme:
                return listener.url
        raise ConflictError("the sandbox is not started", hint="Call start() first.")

    # lifecycle

    def start(self) -> Self:
        """Bind the ports, build and seed the apps, serve them; return once they accept."""
        if self._thread is not None:
            raise ConflictError("the sandbox was already started", hint="Create a new Sandbox.")
        self._open()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="crm-meetings-sandbox", daemon=True
        )
        self._thread.start()
        ready.wait(STARTUP_TIMEOUT)
        if self._failure is not None or not all(lst.server.started for lst in self._listeners):
            self.stop()
            raise ConflictError(
                f"the sandbox did not start: {self._failure or 'timed out'}",
                hint="Check that the ports are free (see --port-base).",
            )
        return self

    def stop(self) -> None:
        """Stop every server and wait for the thread to end (idempotent)."""
        for listener in self._listeners:
            listener.server.should_exit = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for listener in self._listeners:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(listener.server.wake.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        for listener in self._listeners:
            listener.sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _open(self) -> None:
        """Bind every port, set ``env.base_urls``, build and seed the apps, make servers."""
        schemes = ("https", "http") if self.http else ("https",)
        slots = [(scheme, vendor) for scheme in schemes for vendor in self.vendors]
        sockets: list[socket.socket] = []
        try:
            for number, (scheme, vendor) in enumerate(slots):
                sockets.append(_bind(self.port_base + number if self.port_base else 0))
                if scheme == "https":
                    self.env.base_urls[vendor] = _url_of(sockets[-1], scheme)
            apps = self._build_apps()
            self._listeners = [
                _Listener(vendor, scheme, sock, _Server(self._config(apps[vendor], scheme)))
                for (scheme, vendor), sock in zip(slots, sockets, strict=True)
            ]
        except BaseException:
            for sock in sockets:
                sock.close()
            raise

    def _build_apps(self) -> dict[str, SandboxMiddleware]:
        apps = {
            vendor: SandboxMiddleware(
                emulator, emulator.build_app(self.env), self.env, admin=admin_app(self, vendor)
            )
            for vendor, emulator in self.emulators.items()
        }
        if self.seed is not None:
            self.data = generate(self.seed)
            for emulator in self.emulators.values():
                emulator.load(self.data)
        return apps

    def _config(self, app: SandboxMiddleware, scheme: str) -> uvicorn.Config:
        """Fast to start and quiet: no lifespan, no access log, no logging setup."""
        return uvicorn.Config(
            app,
            host=HOST,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=_Protocol,
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(self.ca.server_pem) if scheme == "https" else None,
        )

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as error:  # reported by start()
            self._failure = error
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        tasks = [
            asyncio.create_task(lst.server.serve(sockets=[lst.sock])) for lst in self._listeners
        ]
        while not all(lst.server.started for lst in self._listeners):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.002)
        ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for listener in self._listeners:  # connections still open after the grace time
                for connection in list(listener.server.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if isinstance(transport, asyncio.WriteTransport):
                        transport.abort()
            await asyncio.sleep(0)  # let the aborted transports release their sockets
