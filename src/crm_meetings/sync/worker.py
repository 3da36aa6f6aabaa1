"""The long-running worker: the nightly history sync on its schedule, and the mail outbox.

:class:`Worker` checks that the database schema is current, starts APScheduler with the
nightly job (:func:`~crm_meetings.sync.schedule.schedule_nightly`, ``replace_existing``:
a new hour in the config takes effect on restart, the admin page changes it live), and
delivers the outbox every ``outbox_interval`` seconds, then logs the delivered mail from
organisation addresses on the enabled CRMs (:func:`crm_meetings.senders.crm_log.log_pending`;
a CRM that is down only delays its log). Each round also finishes the action requests
whose attempt was interrupted (:func:`crm_meetings.actions.sweep`, e.g. a rep who closed
the page mid-schedule), and wakes the scheduler, so a job another process rescheduled in
the shared job store is seen within one round. Mail logs and sweeps run per CRM in the
store org its data lives under (:func:`crm_meetings.clients.store_org`).

SIGTERM or SIGINT (:func:`run_worker`): the outbox batch under way finishes, a running
nightly job stops after the organizer it is syncing, the scheduler shuts down, exit 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import NamedTuple, Protocol

import structlog
from apscheduler.schedulers.base import BaseScheduler

from crm_meetings.calendar.outbox import DeliveryReport, SmtpConfig, deliver_pending
from crm_meetings.clients import Clients, settings_sender, store_orgs
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings
from crm_meetings.model import Person
from crm_meetings.store import Store
from crm_meetings.sync import jobs
from crm_meetings.sync.schedule import (
    NIGHTLY_JOB_ID,
    build_scheduler,
    schedule_nightly,
    stop_scheduler,
)

__all__ = ["Companion", "NightlyTime", "Worker", "run_worker"]

_log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
#: the sweep's context needs an actor; :func:`~crm_meetings.actions.sweep` acts as each
#: request's own
_SWEEPER = Person("crm-meetings-worker@example.com")


class Companion(Protocol):
    """Something served alongside the worker (the web app), sharing its scheduler."""

    def start(self, worker: Worker) -> None: ...

    def stop(self) -> None: ...


class NightlyTime(NamedTuple):
    """When the nightly sync fires."""

    hour: int
    minute: int
    timezone: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """Scheduler + outbox loop over one store; :meth:`run` until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        config_path: str | None = None,
        queue: jobs.Queue = "inline",
        outbox_interval: float = 30.0,
        companions: Sequence[Companion] = (),
        clock: Clock = _utc_now,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.queue: jobs.Queue = queue
        self.outbox_interval = outbox_interval
        self.companions = list(companions)
        self.clock = clock
        self.store = Store(jobs.settings_store_url(settings))
        self.scheduler: BaseScheduler | None = None
        self._stop = threading.Event()
        self._smtp = SmtpConfig.from_settings(settings.smtp) if settings.smtp.host else None
        self.clients = Clients.from_settings(settings)  # each built on first use

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Check the schema, start the scheduler with the nightly job, start companions."""
        revision = self.store.check()  # StoreError with "run crm-meetings db upgrade"
        jobs.set_job_defaults(jobs.JobDefaults(self.config_path, self.queue))
        sync = self.settings.sync
        scheduler = build_scheduler(
            jobs.settings_store_url(self.settings),
            timezone=sync.timezone,
            misfire_grace_seconds=sync.misfire_grace_seconds,
        )
        scheduler.start()
        self.scheduler = scheduler
        if sync.enabled:
            when = self.nightly_time()
            job = schedule_nightly(
                scheduler,
                hour=when.hour,
                minute=when.minute,
                timezone=when.timezone,
                kwargs={"config_path": self.config_path, "queue": self.queue},
            )
            _log.info(
                "worker started",
                revision=revision,
                queue=self.queue,
                nightly=f"{when.hour:02d}:{when.minute:02d} {when.timezone}",
                next_run=str(job.next_run_time),
            )
        else:
            if scheduler.get_job(NIGHTLY_JOB_ID) is not None:
                scheduler.remove_job(NIGHTLY_JOB_ID)
            _log.info("worker started without the nightly sync ([sync] enabled = false)")
        if self._smtp is None:
            _log.info("mail is not configured ([smtp] host): the outbox is not delivered")
        for companion in self.companions:
            companion.start(self)

    def nightly_time(self) -> NightlyTime:
        """The admin's time saved on the admin page, else ``[sync]`` hour, minute, timezone."""
        sync = self.settings.sync
        saved = _saved_schedule(self.store)
        return NightlyTime(
            int(str(saved.get("hour", sync.hour))),
            int(str(saved.get("minute", sync.minute))),
            str(saved.get("timezone", sync.timezone)),
        )

    def tick(self) -> DeliveryReport | None:
        """One round: finish interrupted action requests, deliver due mail, log what was
        delivered on the CRMs, then let the scheduler look at its store again."""
        self.sweep()
        report = None
        if self._smtp is not None:
            try:
                report = deliver_pending(self.store, self._smtp, self.clock())
            except Exception:  # the next round tries again; the worker stays up
                _log.exception("outbox delivery failed")
            else:
                if report.attempted:
                    _log.info(
                        "outbox delivered",
                        sent=len(report.sent),
                        deferred=len(report.deferred),
                        failed=len(report.failed),
                    )
            self.log_mail()
        if self.scheduler is not None:
            self.scheduler.wakeup()
        return report

    def log_mail(self) -> None:
        """Log delivered mail from organisation addresses on the CRMs, org by org;
        failures wait for a later round."""
        from crm_meetings.senders.crm_log import log_pending

        for org, crms in store_orgs(self.settings, self.clients.crms).items():
            try:
                connectors = {crm: self.clients.connector(crm) for crm in crms}
                report = log_pending(self.store, connectors, self.clock(), org_id=org)
            except Exception:  # the next round tries again; the worker stays up
                _log.exception("logging mail on the CRM failed", org=org)
                continue
            if report.attempted:
                _log.info(
                    "mail logged on the CRM",
                    org=org,
                    logged=len(report.logged),
                    deferred=len(report.deferred),
                    failed=len(report.failed),
                )

    def sweep(self) -> None:
        """Finish each CRM's interrupted action requests in its store org, as the rep's
        retry with the same key would: on the conferencing provider the request used
        (every enabled provider is offered; one no longer enabled leaves its request
        pending, logged), sending as its rep did (their profile's organisation address, the
        sender they named, else the organizer). Requests saved before these were recorded
        use the default provider and :func:`~crm_meetings.clients.settings_sender`."""
        from crm_meetings.actions import ActionContext, sweep

        sender = settings_sender(self.settings)
        providers = self._providers()
        for org, crms in store_orgs(self.settings, self.clients.crms).items():
            for crm in crms:
                try:
                    ctx = ActionContext(
                        store=self.store,
                        connector=self.clients.connector(crm),
                        provider=self.clients.provider(self.clients.default_provider),
                        providers=providers,
                        actor=_SWEEPER,  # each request is finished as its own actor
                        sender=sender,
                        clock=self.clock,
                        org_id=org,
                    )
                    outcomes = sweep(ctx, providers)
                except Exception:  # the next round tries again; the worker stays up
                    _log.exception("finishing interrupted actions failed", org=org, crm=crm)
                    continue
                for outcome in outcomes:
                    log = _log.info if outcome.completed else _log.warning
                    log(
                        "interrupted action finished"
                        if outcome.completed
                        else "interrupted action failed",
                        org=org,
                        crm=crm.value,
                        action=outcome.action.value,
                        key=outcome.key,
                        error=outcome.error,
                    )

    def _providers(self) -> dict[str, ConferencingProvider]:
        """Every enabled provider that builds; one that does not is logged and left out
        (its requests stay pending, each outcome saying so)."""
        built: dict[str, ConferencingProvider] = {}
        for name in self.clients.providers:
            try:
                provider = self.clients.provider(name)
            except Exception:  # the next round tries again; the other providers still serve
                _log.exception("building a conferencing provider failed", provider=name)
                continue
            if provider is not None:
                built[name] = provider
        return built

    def run(self) -> None:
        """Start, tick until :meth:`stop`, then shut down in order."""
        try:
            self.start()
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.outbox_interval)
        finally:
            self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        self._stop.set()
        jobs.request_stop()

    def close(self) -> None:
        for companion in reversed(self.companions):
            companion.stop()
        self.clients.close()
        if self.scheduler is not None:
            stop_scheduler(self.scheduler)  # waits for a running nightly job
            self.scheduler = None
        self.store.dispose()
        _log.info("worker stopped")


def _saved_schedule(store: Store) -> dict[str, object]:
    """The nightly time the admin page saved, if any."""
    from crm_meetings.store import preferences

    with store.transaction() as uow:
        return (
            preferences.get_preference(uow, preferences.DEPLOYMENT, preferences.SYNC_SCHEDULE) or {}
        )


def run_worker(worker: Worker) -> int:
    """Run ``worker`` in the main thread until SIGTERM or SIGINT; returns the exit status."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        _log.info("stopping", signal=signal.Signals(signum).name)
        worker.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
