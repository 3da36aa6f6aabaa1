"""The running system the demo steps share: sandbox, settings, clients, store, SMTP sink.

:func:`start` serves every emulator over HTTPS on 127.0.0.1, writes a ``crm-meetings.toml``
pointing at them (and at the SMTP sink) in the scratch directory, and builds the
connectors and providers from it exactly as the worker does. :meth:`DemoSystem.close`
stops everything, in reverse order, whatever was started.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from crm_meetings.actions import ActionContext
from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox import DeliveryReport, SmtpConfig, deliver_pending
from crm_meetings.clients import store_org
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.conferencing.factory import from_settings
from crm_meetings.config import Settings, load_settings
from crm_meetings.connectors.base import Connector
from crm_meetings.connectors.registry import build_connector
from crm_meetings.demo.mailbox import MailSink
from crm_meetings.errors import CrmMeetingsError, NotFoundError
from crm_meetings.model import CrmKind, Person, RecordRef
from crm_meetings.sandbox.hubspot.schema import PORTAL_ID
from crm_meetings.sandbox.salesforce.emulator import ORG_ID as SALESFORCE_ORG
from crm_meetings.sandbox.seed import SeedData, SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.zoho import ORG_ID as ZOHO_ORG
from crm_meetings.senders.crm_log import LogReport, log_pending
from crm_meetings.store import Store

if TYPE_CHECKING:
    from crm_meetings.demo.history import HistoryOutcome

__all__ = ["CRMS", "PROVIDERS", "DemoSystem", "start"]

CRMS = ("salesforce", "hubspot", "zoho")
PROVIDERS = ("zoom", "goto")


def _seed(now: datetime) -> SeedSpec:
    """Seeded meetings that ran over the last two weeks (a Monday, 08:00 UTC, on)."""
    day = (now - timedelta(days=14)).replace(hour=8, minute=0, second=0, microsecond=0)
    monday = day - timedelta(days=day.weekday())
    return SeedSpec(seed=2026, meetings=48, organizers=3, records=6, start=monday)


def _settings_toml(sandbox: Sandbox, sink: MailSink, organizer: str, store_url: str) -> str:
    """crm-meetings.toml for the sandbox: the demo's store, every CRM and provider enabled,
    bound to the sandbox's orgs, mail to the sink, fresh web secrets."""
    ca = sandbox.ca_path
    crm_common = 'client_id = "sandbox-client"\nclient_secret = "sandbox-secret"\n'
    url = sandbox.url
    web = "".join(
        f'{key} = "{secrets.token_urlsafe(24)}"\n'
        for key in (
            "session_secret",
            "salesforce_canvas_secret",
            "hubspot_client_secret",
            "zoho_widget_secret",
        )
    )
    return f"""
[store]
url = "{store_url}"

[salesforce]
enabled = true
instance_url = "{url("salesforce")}"
login_url = "{url("salesforce")}"
{crm_common}refresh_token = "{sandbox.refresh_token("salesforce")}"
org_id = "{SALESFORCE_ORG}"
ca_bundle = "{ca}"

[hubspot]
enabled = true
base_url = "{url("hubspot")}"
{crm_common}refresh_token = "{sandbox.refresh_token("hubspot")}"
portal_id = {PORTAL_ID}
ca_bundle = "{ca}"

[zoho]
enabled = true
accounts_url = "{url("zoho")}"
api_domain = "{url("zoho")}"
{crm_common}refresh_token = "{sandbox.refresh_token("zoho")}"
org_id = "{ZOHO_ORG}"
ca_bundle = "{ca}"

[web]
{web}
[zoom]
enabled = true
base_url = "{url("zoom")}"
token_url = "{url("zoom")}/oauth/token"
account_id = "sandbox-account"
client_id = "sandbox-client"
client_secret = "{sandbox.refresh_token("zoom")}"
ca_bundle = "{ca}"

[goto]
enabled = true
base_url = "{url("goto")}"
token_url = "{url("goto")}/oauth/token"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token = "{sandbox.refresh_token("goto", subject=organizer)}"
ca_bundle = "{ca}"

[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
timeout = 5
from_address = "crm-meetings@sales.example.com"
"""


@dataclass
class DemoSystem:
    """Everything started for the demo; close it once (idempotent)."""

    out: Path
    sandbox: Sandbox
    sink: MailSink
    settings: Settings
    store: Store
    connectors: dict[str, Connector]
    providers: dict[str, ConferencingProvider]
    started_monotonic: float
    sender: Sender | None = None  # the confirmed organisation address, once there is one
    history: HistoryOutcome | None = None  # the history sync's outcome, once it ran
    _pages: dict[str, RecordRef] = field(default_factory=dict)
    ics_files: list[Path] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def data(self) -> SeedData:
        assert self.sandbox.data is not None  # always seeded
        return self.sandbox.data

    @property
    def organizer(self) -> Person:
        """The rep running the demo: the first seeded organizer (a Zoom and GoTo user)."""
        user = self.data.users[0]
        return Person(user.email, user.name)

    def person(self, number: int) -> Person:
        """The seeded contact of company ``number``."""
        record = self.data.records[number]
        return Person(record.contact_email, record.contact_name)

    def org(self, crm: str) -> str:
        """The store org ``crm``'s data lives under: the sandbox org its connection serves
        (:func:`~crm_meetings.clients.store_org`, as for every entry point)."""
        return store_org(self.settings, CrmKind(crm))

    def context(self, crm: str, provider: str | None, actor: Person | None = None) -> ActionContext:
        """What an action needs for ``crm`` with ``provider``, as ``actor`` (the rep), in
        ``crm``'s org."""
        return ActionContext(
            store=self.store,
            connector=self.connectors[crm],
            provider=self.providers[provider] if provider else None,
            providers=self.providers,
            actor=actor or self.organizer,
            sender=self.sender,
            org_id=self.org(crm),
        )

    def record_page(self, crm: str) -> RecordRef:
        """The record the rep acts from: the first record a CRM meeting relates to."""
        if crm in self._pages:
            return self._pages[crm]
        for page in self.connectors[crm].changed_since(None):
            for meeting in page.meetings:
                if meeting.related:
                    self._pages[crm] = meeting.related[0]
                    return meeting.related[0]
        raise NotFoundError(f"{crm}: no seeded meeting relates to a record")

    def deliver(self) -> tuple[DeliveryReport, list[Path]]:
        """Send the outbox to the sink; the new messages' files."""
        smtp = SmtpConfig.from_settings(self.settings.smtp)
        report = deliver_pending(self.store, smtp, datetime.now(UTC))
        if report.deferred or report.failed:
            raise CrmMeetingsError(
                f"{len(report.deferred) + len(report.failed)} message(s) not delivered",
                hint="See `crm-meetings outbox list` in the demo's store.",
            )
        return report, self.sink.save_new()

    def log_on_crm(self) -> LogReport:
        """Log the delivered mail from the organisation address on the CRM records (what
        the worker does after each delivery round)."""
        report = LogReport()
        for name, connector in self.connectors.items():
            found = log_pending(
                self.store, {CrmKind(name): connector}, datetime.now(UTC), org_id=self.org(name)
            )
            report.logged.extend(found.logged)
            report.deferred.extend(found.deferred)
            report.failed.extend(found.failed)
        if report.deferred or report.failed:
            raise CrmMeetingsError(
                f"{len(report.deferred) + len(report.failed)} e-mail(s) not logged on the CRM",
                hint="See the crm_mail_log table in the demo's store.",
            )
        return report

    def offer_ics(self, name: str, ics: bytes) -> Path:
        """Keep a calendar file the rep downloaded (add to calendar) under ``ics/``."""
        folder = self.out / "ics"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{len(self.ics_files) + 1:02d}-{name}.ics"
        path.write_bytes(ics)
        self.ics_files.append(path)
        return path

    def close(self) -> None:
        """Close clients, stop the servers, release the store."""
        self._stack.close()

    @property
    def closed(self) -> bool:
        return not self.sandbox.running and not self.sink.running


def _clear(out: Path) -> None:
    """Remove what an earlier demo left in ``out``: its files would mix with this run's."""
    for old in (*out.glob("mail/*.eml"), *out.glob("ics/*.ics"), out / "sync-report.json"):
        old.unlink(missing_ok=True)


def start(out: Path, workdir: Path, store_url: str) -> DemoSystem:
    """Serve the sandbox and the sink, load the settings, build every client."""
    _clear(out)
    stack = contextlib.ExitStack()
    try:
        began = time.monotonic()
        sandbox = Sandbox([*CRMS, *PROVIDERS], seed=_seed(datetime.now(UTC)))
        sandbox.start()
        stack.callback(sandbox.stop)
        sink = MailSink(out / "mail")
        sink.start()
        stack.callback(sink.stop)
        assert sandbox.data is not None
        config = workdir / "crm-meetings.toml"
        organizer = sandbox.data.users[0].email
        config.write_text(_settings_toml(sandbox, sink, organizer, store_url), "utf-8")
        settings = load_settings(config, env={})
        store = Store(store_url)
        stack.callback(store.dispose)
        connectors: dict[str, Connector] = {}
        providers: dict[str, ConferencingProvider] = {}
        for crm in CRMS:  # closed before the sandbox stops: idle TLS connections linger
            connectors[crm] = stack.enter_context(
                contextlib.closing(build_connector(crm, settings))
            )
        for name in PROVIDERS:
            provider = from_settings(getattr(settings, name))
            providers[name] = stack.enter_context(contextlib.closing(provider))
        return DemoSystem(
            out, sandbox, sink, settings, store, connectors, providers, began, _stack=stack
        )
    except BaseException:
        stack.close()
        raise
