"""The history sync as jobs: the nightly run over every organizer, and one organizer's run.

:func:`run_nightly` is what APScheduler fires (``crm_meetings.sync.jobs:run_nightly``). It
loads the settings, claims the night in the database (:data:`NIGHTLY_JOB_ID`, the local
date), so that of several workers only the first runs it, then for each enabled
conferencing provider and each organizer with meetings there either syncs them one after
the other (``queue="inline"``) or enqueues one Celery task each (``queue="celery"``). One
organizer's failure is recorded and the others go on. Every store org the enabled CRMs
live under (:func:`crm_meetings.clients.store_org`) is visited, each with its own CRMs'
connectors: meetings scheduled from a CRM's panel are synced like those of the CLI.

:func:`run_organizer` is one organizer's run, what a Celery task executes; the CLI's
``crm-meetings sync`` uses :class:`SyncClients`, :func:`sync_targets` and
:func:`sync_organizers` the same way.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import sqlalchemy as sa
import structlog

from crm_meetings.clients import PROVIDERS, Clients, store_orgs
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings, load_settings
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import ConfigurationError, CrmMeetingsError, ValidationError
from crm_meetings.model import CrmKind, MeetingStatus
from crm_meetings.redaction import redact
from crm_meetings.store import DEFAULT_ORG_ID, Repository, Store, default_sqlite_url
from crm_meetings.store.tables import MeetingRow
from crm_meetings.sync.claims import ClaimRepository
from crm_meetings.sync.engine import HistorySync, Progress, SyncOptions, SyncReport
from crm_meetings.sync.schedule import NIGHTLY_JOB_ID, nightly_run_key

__all__ = [
    "PROVIDERS",
    "JobDefaults",
    "NightlyReport",
    "OrganizerOutcome",
    "Queue",
    "SyncClients",
    "SyncTargetRepository",
    "enabled_providers",
    "job_defaults",
    "org_targets",
    "request_stop",
    "run_nightly",
    "run_organizer",
    "set_job_defaults",
    "settings_store_url",
    "stopping",
    "sync_organizers",
    "sync_targets",
]

_log = structlog.get_logger(__name__)

#: the conferencing providers, in the order the nightly run visits them

Queue = Literal["inline", "celery"]
Clock = Callable[[], datetime]
Target = tuple[str, str]  # (provider, organizer e-mail)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- process-wide defaults and stop flag ------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """What a nightly job scheduled without arguments (e.g. by the admin page) uses."""

    config_path: str | None = None
    queue: Queue = "inline"


_defaults = JobDefaults()
_stop = threading.Event()


def set_job_defaults(defaults: JobDefaults) -> None:
    """Set by the worker at start: its config file and queue."""
    global _defaults
    _defaults = defaults
    _stop.clear()


def job_defaults() -> JobDefaults:
    return _defaults


def request_stop() -> None:
    """Ask a running nightly job to stop after the organizer it is syncing (SIGTERM)."""
    _stop.set()


def stopping() -> bool:
    return _stop.is_set()


# --- settings and clients -----------------------------------------------------------------


def settings_store_url(settings: Settings) -> str:
    """``[store].url``, or the embedded SQLite database in ``[store].data_dir``."""
    return settings.store.url or default_sqlite_url(settings.store.data_dir)


def _load(config_path: str | None, env: Mapping[str, str] | None) -> Settings:
    return load_settings(Path(config_path) if config_path else None, env)


def enabled_providers(settings: Settings) -> list[str]:
    return [name for name in PROVIDERS if getattr(settings, name).enabled]


class SyncClients:
    """The store, the enabled CRMs' connectors and the providers, opened once, closed together.

    Providers are built on first use. ``store`` may be given (and is then not disposed).
    """

    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        self._own_store = store is None
        self.store = store if store is not None else Store(settings_store_url(settings))
        self.clients = Clients.from_settings(settings)

    def _require_crms(self) -> None:
        if not self.clients.crms:
            raise ConfigurationError(
                "No CRM is enabled, so there is nowhere to write history",
                hint="Set enabled = true in [salesforce], [hubspot] or [zoho].",
            )

    @property
    def connectors(self) -> dict[CrmKind, Connector]:
        self._require_crms()
        return {crm: self.clients.connector(crm) for crm in sorted(self.clients.crms)}

    def connectors_of(self, org_id: str) -> dict[CrmKind, Connector]:
        """The connectors of the enabled CRMs whose data lives under ``org_id``."""
        crms = store_orgs(self.settings, self.clients.crms).get(org_id)
        if not crms:
            known = ", ".join(store_orgs(self.settings, self.clients.crms)) or "none"
            raise ConfigurationError(
                f"No enabled CRM keeps its meetings under org {org_id!r} (orgs: {known})",
                hint="Check [salesforce] org_id, [hubspot] portal_id and [zoho] org_id; "
                "`crm-meetings doctor` names the org of each CRM.",
            )
        return {crm: self.clients.connector(crm) for crm in crms}

    @property
    def orgs(self) -> list[str]:
        """The store orgs of the enabled CRMs (:func:`~crm_meetings.clients.store_org`);
        none enabled is an error naming what to set."""
        self._require_crms()
        return list(store_orgs(self.settings, self.clients.crms))

    def provider(self, name: str) -> ConferencingProvider:
        if name not in PROVIDERS:
            raise ValidationError(
                "provider", f"unknown provider {name!r}; valid names: {', '.join(PROVIDERS)}"
            )
        provider = self.clients.provider(name)
        if provider is None:
            raise ConfigurationError(
                "is false",
                key=f"{name}.enabled",
                hint=f"Set [{name}] enabled = true and its credentials in crm-meetings.toml.",
            )
        return provider

    def engine(
        self, provider: str, options: SyncOptions, *, clock: Clock = _utc_now
    ) -> HistorySync:
        return HistorySync(
            self.store,
            self.provider(provider),
            self.connectors_of(options.org_id),
            clock=clock,
            options=options,
        )

    def options(self, org_id: str = DEFAULT_ORG_ID, *, dry_run: bool = False) -> SyncOptions:
        """Engine options from ``[sync]``."""
        overlap = timedelta(minutes=self.settings.sync.overlap_minutes)
        return SyncOptions(org_id=org_id, overlap=overlap, dry_run=dry_run)

    def close(self) -> None:
        """Close every client opened; one failing close does not keep the others open."""
        try:
            self.clients.close()
        except Exception:  # closing is best effort; the run's result stands
            _log.warning("closing a client failed", exc_info=True)
        if self._own_store:
            self.store.dispose()

    def __enter__(self) -> SyncClients:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncTargetRepository(Repository):
    """Which organizers the nightly sync visits."""

    def organizers(self, provider: str, *, org_id: str = DEFAULT_ORG_ID) -> list[str]:
        """Organizers with at least one live meeting on ``provider``, by e-mail."""
        query = (
            sa.select(MeetingRow.organizer_email)
            .where(
                MeetingRow.org_id == org_id,
                MeetingRow.provider == provider,
                MeetingRow.provider_meeting_id.is_not(None),
                MeetingRow.status != MeetingStatus.DELETED.value,
            )
            .distinct()
            .order_by(MeetingRow.organizer_email)
        )
        return list(self.session.scalars(query))


def sync_targets(
    store: Store,
    providers: Sequence[str],
    *,
    org_id: str = DEFAULT_ORG_ID,
    organizer: str | None = None,
) -> list[Target]:
    """(provider, organizer) pairs to sync: every known organizer, or only ``organizer``."""
    with store.transaction() as uow:
        known = {
            p: uow.repository(SyncTargetRepository).organizers(p, org_id=org_id) for p in providers
        }
    if organizer is None:
        return [(p, email) for p in providers for email in known[p]]
    wanted = organizer.strip().lower()
    return [(p, wanted) for p in providers if wanted in known[p]] or [
        (p, wanted) for p in providers
    ]


def org_targets(
    clients: SyncClients, providers: Sequence[str], *, organizer: str | None = None
) -> dict[str, list[Target]]:
    """:func:`sync_targets` of every store org the enabled CRMs live under; an organizer
    no org knows yet is tried in each."""
    found = {
        org: sync_targets(clients.store, providers, org_id=org, organizer=organizer)
        for org in clients.orgs
    }
    if organizer is None:
        return {org: targets for org, targets in found.items() if targets}
    wanted = organizer.strip().lower()
    with clients.store.transaction() as uow:
        repository = uow.repository(SyncTargetRepository)
        knowing = {
            org
            for org in found
            if any(wanted in repository.organizers(p, org_id=org) for p in providers)
        }
    return {org: targets for org, targets in found.items() if org in knowing or not knowing}


# --- running ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrganizerOutcome:
    """One organizer's run: its report, or the error that stopped it."""

    provider: str
    organizer: str
    report: SyncReport | None = None
    error: str | None = None
    org_id: str = DEFAULT_ORG_ID

    @property
    def ok(self) -> bool:
        return self.error is None and self.report is not None and not self.report.counters.errors

    def to_json(self) -> dict[str, Any]:
        report = self.report
        return {
            "org_id": self.org_id,
            "provider": self.provider,
            "organizer": self.organizer,
            "run_id": report.run_id if report else None,
            "status": report.status.value if report else "failed",
            "counters": report.counters.to_json() if report else None,
            "unmatched": list(report.unmatched) if report else [],
            "error": self.error,
        }


OrganizerProgress = Callable[[str, str], Progress | None]  # (provider, organizer) → callback


def sync_organizers(
    clients: SyncClients,
    targets: Sequence[Target],
    options: SyncOptions,
    *,
    kind: str,
    since: datetime | None = None,
    clock: Clock = _utc_now,
    progress: OrganizerProgress | None = None,
) -> list[OrganizerOutcome]:
    """Sync each target in turn; an error is recorded for its organizer and the rest go on.

    Stops between organizers once :func:`request_stop` was called.
    """
    outcomes: list[OrganizerOutcome] = []
    org = options.org_id
    for provider, organizer in targets:
        if stopping():
            outcomes.append(
                OrganizerOutcome(
                    provider, organizer, error="not run: the worker is stopping", org_id=org
                )
            )
            continue
        on_progress = progress(provider, organizer) if progress is not None else None
        try:
            engine = clients.engine(provider, options, clock=clock)
            report = engine.sync_organizer(organizer, kind=kind, progress=on_progress, since=since)
        except CrmMeetingsError as error:
            outcomes.append(OrganizerOutcome(provider, organizer, error=str(error), org_id=org))
            _log.warning(
                "organizer sync failed", provider=provider, organizer=organizer, error=str(error)
            )
        except Exception as error:  # one organizer's bug must not stop the night
            text = redact(f"{type(error).__name__}: {error}")
            outcomes.append(OrganizerOutcome(provider, organizer, error=text, org_id=org))
            _log.exception("organizer sync crashed", provider=provider, organizer=organizer)
        else:
            outcomes.append(OrganizerOutcome(provider, organizer, report, org_id=org))
    return outcomes


def run_organizer(
    config_path: str | None,
    org_id: str,
    provider: str,
    organizer: str,
    *,
    kind: str = "nightly",
    env: Mapping[str, str] | None = None,
    clock: Clock = _utc_now,
) -> OrganizerOutcome:
    """One organizer's history sync (a Celery task's body); errors propagate to the caller."""
    settings = _load(config_path, env)
    with SyncClients(settings) as clients:
        engine = clients.engine(provider, clients.options(org_id), clock=clock)
        report = engine.sync_organizer(organizer, kind=kind)
        return OrganizerOutcome(provider, organizer, report, org_id=org_id)


@dataclass(frozen=True, slots=True)
class NightlyReport:
    """What one nightly fire did: claimed the night or found it taken; ran or enqueued."""

    run_key: str
    claimed: bool
    queue: Queue = "inline"
    outcomes: tuple[OrganizerOutcome, ...] = ()
    enqueued: tuple[str, ...] = ()  # Celery task ids
    skipped: str | None = None  # why nothing ran
    targets: tuple[Target, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "claimed": self.claimed,
            "queue": self.queue,
            "skipped": self.skipped,
            "outcomes": [o.to_json() for o in self.outcomes],
            "enqueued": list(self.enqueued),
        }


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_nightly(
    config_path: str | None = None,
    *,
    queue: Queue | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock = _utc_now,
) -> NightlyReport:
    """The nightly job: claim tonight, then sync (or enqueue) every organizer of every
    store org once.

    Arguments left out come from :func:`job_defaults` (what the worker was started with).
    """
    defaults = job_defaults()
    config_path = config_path or defaults.config_path
    chosen: Queue = queue or defaults.queue
    settings = _load(config_path, env)
    now = clock()
    key = nightly_run_key(now, settings.sync.timezone)
    report = NightlyReport(key, claimed=False, queue=chosen)
    if not settings.sync.enabled:
        return replace(report, skipped="[sync] enabled = false")
    with SyncClients(settings) as clients:
        with clients.store.transaction() as uow:
            claimed = uow.repository(ClaimRepository).claim(NIGHTLY_JOB_ID, key, _holder())
        if not claimed:
            _log.info("nightly sync already claimed", run_key=key)
            return replace(report, skipped=f"the run of {key} was claimed by another worker")
        if not clients.clients.crms:
            return replace(report, claimed=True, skipped="no CRM is enabled to write history to")
        by_org = org_targets(clients, enabled_providers(settings))
        targets = [target for found in by_org.values() for target in found]
        report = replace(report, claimed=True, targets=tuple(targets))
        _log.info(
            "nightly sync started",
            run_key=key,
            orgs=len(by_org),
            organizers=len(targets),
            queue=chosen,
        )
        if chosen == "celery":
            from crm_meetings.sync.celery_app import enqueue_organizers

            absolute = str(Path(config_path).resolve()) if config_path else None
            ids = [
                i for org, found in by_org.items() for i in enqueue_organizers(absolute, org, found)
            ]
            return replace(report, enqueued=tuple(ids))
        outcomes = [
            outcome
            for org, found in by_org.items()
            for outcome in sync_organizers(
                clients, found, clients.options(org), kind="nightly", clock=clock
            )
        ]
    failed = sum(not o.ok for o in outcomes)
    _log.info("nightly sync finished", run_key=key, organizers=len(outcomes), failed=failed)
    return replace(report, outcomes=tuple(outcomes))
