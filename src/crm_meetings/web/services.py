"""What the web app is given besides settings and store: the worker's pieces it drives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.base import BaseScheduler

from crm_meetings.actions import ActionContext
from crm_meetings.commands import Check
from crm_meetings.connectors.base import RecordType
from crm_meetings.model import CrmKind, Meeting, Session
from crm_meetings.web.auth import CallerContext, ReplayCheck

if TYPE_CHECKING:
    from crm_meetings.web.security import Principal

__all__ = [
    "ActionContextFactory",
    "RecordTypeSource",
    "SyncMeeting",
    "SyncOrganizer",
    "WebServices",
]

#: the meeting record types the caller's CRM has (a connector's ``record_types``)
RecordTypeSource = Callable[[CallerContext], Sequence[RecordType]]
#: syncs one meeting's history now and returns its sessions (the sync engine)
SyncMeeting = Callable[[CallerContext, Meeting], Sequence[Session]]
#: syncs every meeting of one organizer (by e-mail) now (the sync engine)
SyncOrganizer = Callable[[CallerContext, str], None]
#: the actions' context for a verified caller: their org, them as actor, their CRM
ActionContextFactory = Callable[["Principal"], ActionContext]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebServices:
    """Optional collaborators; each missing one has a store-only fallback.

    ``scheduler`` is the worker's APScheduler (saving the sync hour reschedules it);
    ``admins`` are the e-mail addresses that may use the admin page; ``checks`` are the
    ``doctor`` checks shown as connection health; ``action_context`` builds the actions'
    context (connector, provider, sender) for a caller — without it the action endpoints
    answer 503 ``actions_unavailable``. ``sync_meeting`` may raise
    :class:`~crm_meetings.errors.NoSessionExistsError`; "sync my meetings" uses
    ``sync_organizer`` when given, else ``sync_meeting`` per meeting. ``replay`` refuses
    a signed request used before; by default the store's table, shared by every process
    (:class:`~crm_meetings.web.replay.StoredReplayGuard`). ``connected`` are the CRMs this
    deployment holds a connection to: their callers must come from the org it serves
    (:class:`~crm_meetings.web.orgs.OrgBinding`).
    """

    scheduler: BaseScheduler | None = None
    admins: frozenset[str] = frozenset()
    checks: Sequence[Check] = ()
    record_types: RecordTypeSource | None = None
    sync_meeting: SyncMeeting | None = None
    sync_organizer: SyncOrganizer | None = None
    action_context: ActionContextFactory | None = None
    replay: ReplayCheck | None = None
    connected: frozenset[CrmKind] = frozenset()
    session_ttl: timedelta = timedelta(hours=1)
    nightly_func: str = "crm_meetings.sync.jobs:run_nightly"
