"""The web app on real services: CRM connectors, providers and the sync engine.

:class:`Clients` builds each CRM connector and conferencing provider the first time a
request needs it and keeps it for the life of the process; :meth:`Clients.close` closes
them all (on shutdown). :func:`live_services` gives the :class:`WebServices` whose actions,
record types and "sync now" go through those clients::

    with Clients.from_settings(settings) as clients:
        services = live_services(settings, store, clients, admins=admins)
        uvicorn.run(create_app(settings, store=store, services=services))

A deployment holds one connection per CRM kind and per provider: every caller of a CRM
kind acts through the same connection (see :func:`live_services` for the org caveat).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Final, Self, TypeVar

from apscheduler.schedulers.base import BaseScheduler

from crm_meetings.actions import ActionContext
from crm_meetings.calendar.imip import Sender
from crm_meetings.commands import Check
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings
from crm_meetings.connectors.base import Connector, RecordType
from crm_meetings.model import CrmKind, Meeting, Session
from crm_meetings.store import Clock, Store
from crm_meetings.store.repositories import utc_now
from crm_meetings.sync.engine import HistorySync, SyncOptions
from crm_meetings.web.actions_api import ActionsUnavailableError
from crm_meetings.web.auth import CallerContext
from crm_meetings.web.security import Principal
from crm_meetings.web.services import WebServices

__all__ = ["PROVIDERS", "Clients", "live_services", "settings_sender"]

#: the conferencing providers, in the order the first enabled one is the default
PROVIDERS: Final = ("zoom", "goto")

ConnectorFactory = Callable[[CrmKind], Connector]
ProviderFactory = Callable[[str], ConferencingProvider]
_Key = TypeVar("_Key")
_Client = TypeVar("_Client", Connector, ConferencingProvider)


class Clients:
    """The process's CRM connectors and conferencing providers, built once, closed once.

    ``crms`` and ``providers`` are what this deployment has configured; asking for another
    raises :class:`ActionsUnavailableError` (503). Safe to share between request threads.
    """

    def __init__(
        self,
        connector: ConnectorFactory,
        provider: ProviderFactory,
        *,
        crms: Iterable[CrmKind],
        providers: Sequence[str] = (),
    ) -> None:
        self._build_connector = connector
        self._build_provider = provider
        self.crms = frozenset(crms)
        self.providers = tuple(providers)
        self._connectors: dict[CrmKind, Connector] = {}
        self._provider_clients: dict[str, ConferencingProvider] = {}
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Clients:
        """The CRMs and providers ``settings`` enable, built by the registry and factory."""
        from crm_meetings.conferencing.factory import from_settings
        from crm_meetings.connectors.registry import CONNECTORS, build_connector

        return cls(
            lambda crm: build_connector(crm.value, settings),
            lambda name: from_settings(getattr(settings, name)),
            crms=[CrmKind(n) for n in CONNECTORS if getattr(settings, n).enabled],
            providers=[n for n in PROVIDERS if getattr(settings, n).enabled],
        )

    @property
    def default_provider(self) -> str | None:
        """The provider new meetings are scheduled on (the first enabled one)."""
        return self.providers[0] if self.providers else None

    def connector(self, crm: CrmKind) -> Connector:
        """The connector of ``crm`` (503 ``actions_unavailable`` when not configured)."""
        if crm not in self.crms:
            raise ActionsUnavailableError(
                f"This server has no {crm.value} connection.",
                hint=f"Set [{crm.value}] enabled = true and its credentials in "
                "crm-meetings.toml, then restart `crm-meetings web serve`.",
            )
        return self._cached(self._connectors, crm, self._build_connector)

    def provider(self, name: str | None) -> ConferencingProvider | None:
        """The provider called ``name``; ``None`` when this server has not configured it."""
        if name is None or name not in self.providers:
            return None
        return self._cached(self._provider_clients, name, self._build_provider)

    def _cached(
        self, cache: dict[_Key, _Client], key: _Key, build: Callable[[_Key], _Client]
    ) -> _Client:
        with self._lock:
            if self._closed:
                raise ActionsUnavailableError(
                    "This server is shutting down.", hint="Try again in a moment."
                )
            found = cache.get(key)
            if found is None:
                found = cache[key] = build(key)
            return found

    def close(self) -> None:
        """Close every client built so far (each once, even if another fails)."""
        with self._lock:
            self._closed = True
            opened: list[Connector | ConferencingProvider] = [
                *self._connectors.values(),
                *self._provider_clients.values(),
            ]
            self._connectors.clear()
            self._provider_clients.clear()
        errors: list[Exception] = []
        for client in opened:
            try:
                client.close()
            except Exception as error:  # close the others before reporting
                errors.append(error)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def settings_sender(settings: Settings) -> Sender | None:
    """The From of invitations: ``[smtp] from_address`` when set, else the organizer."""
    smtp = settings.smtp
    if smtp.from_address is None:
        return None
    return Sender(str(smtp.from_address), "crm-meetings", smtp.reply_to and str(smtp.reply_to))


class _RecordTypes:
    """Each CRM's active meeting record types, asked at most once per ``ttl``."""

    def __init__(self, clients: Clients, ttl: timedelta) -> None:
        self._clients = clients
        self._ttl = ttl.total_seconds()
        self._fetched: dict[CrmKind, tuple[float, list[RecordType]]] = {}
        self._lock = threading.Lock()

    def __call__(self, caller: CallerContext) -> Sequence[RecordType]:
        if caller.crm not in self._clients.crms:
            return ()  # no connection: nothing to pick from (scheduling answers 503)
        with self._lock:
            cached = self._fetched.get(caller.crm)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        found = [t for t in self._clients.connector(caller.crm).record_types() if t.active]
        with self._lock:
            self._fetched[caller.crm] = (time.monotonic(), found)
        return found


def live_services(
    settings: Settings,
    store: Store,
    clients: Clients,
    *,
    clock: Clock = utc_now,
    scheduler: BaseScheduler | None = None,
    admins: frozenset[str] = frozenset(),
    checks: Sequence[Check] = (),
    record_types_ttl: timedelta = timedelta(minutes=5),
) -> WebServices:
    """:class:`WebServices` whose actions, record types and sync use ``clients``.

    Actions run in the caller's org, as the caller, on their CRM's connector and the
    default provider, sending from :func:`settings_sender`. "Sync now" runs the history
    engine on the meeting's own provider (a meeting never started answers 404
    ``no_session_exists``); without that provider it shows the stored sessions.

    Callers are scoped by the org id their CRM signed, but the connection is the one the
    settings configure: serve one CRM org per deployment (the connected app's org).
    """
    sender = settings_sender(settings)

    def action_context(caller: Principal) -> ActionContext:
        return ActionContext(
            store=store,
            connector=clients.connector(caller.caller.crm),
            provider=clients.provider(clients.default_provider),
            actor=caller.actor(),
            sender=sender,
            clock=clock,
            org_id=caller.org_id,
            admins=admins,
        )

    def engine(caller: CallerContext, provider: ConferencingProvider) -> HistorySync:
        return HistorySync(
            store,
            provider,
            {caller.crm: clients.connector(caller.crm)},
            clock=clock,
            options=SyncOptions(org_id=caller.org_id),
        )

    def sync_meeting(caller: CallerContext, meeting: Meeting) -> Sequence[Session]:
        provider = clients.provider(meeting.provider)
        if provider is not None:
            engine(caller, provider).sync_meeting(meeting.id)
        with store.transaction() as uow:
            return uow.sessions.list_for_meeting(meeting.id)

    def sync_organizer(caller: CallerContext, organizer: str) -> None:
        for name in clients.providers:
            provider = clients.provider(name)
            if provider is not None:
                engine(caller, provider).sync_organizer(organizer, kind="manual")

    return WebServices(
        scheduler=scheduler,
        admins=admins,
        checks=checks,
        record_types=_RecordTypes(clients, record_types_ttl),
        sync_meeting=sync_meeting,
        sync_organizer=sync_organizer,
        action_context=action_context,
    )
