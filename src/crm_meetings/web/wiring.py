"""The web app on real services: CRM connectors, providers and the sync engine.

:class:`Clients` builds each CRM connector and conferencing provider the first time a
request needs it and keeps it for the life of the process; :meth:`Clients.close` closes
them all (on shutdown). :func:`live_services` gives the :class:`WebServices` whose actions,
record types and "sync now" go through those clients::

    with Clients.from_settings(settings) as clients:
        services = live_services(settings, store, clients, admins=admins)
        uvicorn.run(create_app(settings, store=store, services=services))

A deployment holds one connection per CRM kind and per provider: every caller of a CRM
kind acts through the same connection, so callers are bound to the org it serves
(:class:`~crm_meetings.web.orgs.OrgBinding`, from ``[salesforce] org_id``, ``[hubspot]
portal_id``, ``[zoho] org_id``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from apscheduler.schedulers.base import BaseScheduler

from crm_meetings import clients
from crm_meetings.actions import ActionContext
from crm_meetings.clients import PROVIDERS, settings_sender
from crm_meetings.commands import Check
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings
from crm_meetings.connectors.base import RecordType
from crm_meetings.model import CrmKind, Meeting, Session
from crm_meetings.store import Clock, Store
from crm_meetings.store.repositories import utc_now
from crm_meetings.sync.engine import HistorySync, SyncOptions
from crm_meetings.web.actions_api import ActionsUnavailableError
from crm_meetings.web.auth import CallerContext
from crm_meetings.web.security import Principal
from crm_meetings.web.services import WebServices

__all__ = ["PROVIDERS", "Clients", "live_services", "settings_sender"]


class Clients(clients.Clients):
    """The process's clients; a CRM this server has not configured answers 503."""

    unavailable = ActionsUnavailableError


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

    Actions run in the caller's org, as the caller (with the CRM profile their signed
    request named, so an organisation address that profile may use is the From), on their
    CRM's connector, scheduling on the default provider (edit, cancel and delete act at
    the meeting's own provider, any configured one), else sending from
    :func:`settings_sender`.
    "Sync now" runs the history engine on the meeting's own provider (a meeting never
    started answers 404 ``no_session_exists``); without that provider it shows the
    stored sessions.

    Every connected CRM serves one org: ``connected`` makes the app refuse callers from
    any other (403), see :class:`~crm_meetings.web.orgs.OrgBinding`.
    """
    sender = settings_sender(settings)

    def action_context(caller: Principal) -> ActionContext:
        return ActionContext(
            store=store,
            connector=clients.connector(caller.caller.crm),
            provider=clients.provider(clients.default_provider),
            providers=clients.providers_by_name(),
            actor=caller.actor(),
            sender=sender,
            clock=clock,
            org_id=caller.org_id,
            admins=admins,
            profile=caller.caller.profile,
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
        connected=clients.crms,
    )
