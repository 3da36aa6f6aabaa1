"""The web app as a deployment serves it, wired once for every process that serves it.

``crm-meetings web serve``, ``crm-meetings worker --web`` and the demo all call
:func:`live_app`: the same actions, record types, "sync now", org binding (from the
connections ``clients`` holds) and booking hosts, so a page answers alike whichever
process serves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from apscheduler.schedulers.base import BaseScheduler
from fastapi import FastAPI

from crm_meetings.commands import Check
from crm_meetings.config import Settings
from crm_meetings.store import Clock, Store
from crm_meetings.store.repositories import utc_now
from crm_meetings.web.app import create_app
from crm_meetings.web.booking import host_contexts, use_host_contexts
from crm_meetings.web.wiring import Clients, live_services

__all__ = ["live_app"]


def live_app(
    settings: Settings,
    store: Store,
    clients: Clients,
    *,
    scheduler: BaseScheduler | None = None,
    admins: frozenset[str] = frozenset(),
    checks: Sequence[Check] = (),
    clock: Clock = utc_now,
) -> FastAPI:
    """The app over ``store`` whose actions and sync go through ``clients`` (closed by the
    caller), bound to the orgs their connections serve; ``scheduler`` is the nightly
    job's, which the admin page reschedules."""
    services = live_services(
        settings, store, clients, clock=clock, scheduler=scheduler, admins=admins, checks=checks
    )
    app = create_app(settings, store=store, clock=clock, services=services)
    use_host_contexts(app, host_contexts(settings, store, clients, clock=clock))
    return app
