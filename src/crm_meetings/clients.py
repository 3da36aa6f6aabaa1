"""The CRM connectors and conferencing providers one process uses, built once, closed once,
and the one rule saying under which store org each CRM connection's data lives.

The worker, the sync jobs and the web app share this: a connector or provider is built
from the settings the first time it is needed (:mod:`crm_meetings.connectors.registry`,
:mod:`crm_meetings.conferencing.factory`) and every one is closed together.

:func:`store_org` is the rule every entry point follows (CLI, sync, worker, web): a CRM
connection's meetings, checkpoints, runs and mail log live under the org id configured for
it (``[salesforce] org_id``, ``[hubspot] portal_id``, ``[zoho] org_id``), else under
:data:`~crm_meetings.store.DEFAULT_ORG_ID` (installs that name no org).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Final, Self, TypeVar

from crm_meetings.calendar.imip import Sender
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import ConfigurationError, ValidationError
from crm_meetings.model import CrmKind
from crm_meetings.store.tables import DEFAULT_ORG_ID

__all__ = [
    "ORG_KEYS",
    "PROVIDERS",
    "Clients",
    "configured_org",
    "enabled_crms",
    "org_for_cli",
    "settings_sender",
    "store_org",
    "store_orgs",
]

#: the conferencing providers, in the order the first enabled one is the default
PROVIDERS: Final = ("zoom", "goto")

#: per CRM: the settings key holding the org its connection serves, and what the CRM
#: calls an org
ORG_KEYS: Final[Mapping[CrmKind, tuple[str, str]]] = {
    CrmKind.SALESFORCE: ("org_id", "Salesforce org"),
    CrmKind.HUBSPOT: ("portal_id", "HubSpot portal"),
    CrmKind.ZOHO: ("org_id", "Zoho org"),
}


def configured_org(settings: Settings, crm: CrmKind) -> str | None:
    """The org id configured for ``crm``'s connection, if any."""
    key, _ = ORG_KEYS[crm]
    value = getattr(getattr(settings, crm.value), key)
    return None if value is None else str(value)


def settings_sender(settings: Settings) -> Sender | None:
    """The From of invitations: ``[smtp] from_address`` when set, else the organizer."""
    smtp = settings.smtp
    if smtp.from_address is None:
        return None
    return Sender(str(smtp.from_address), "crm-meetings", smtp.reply_to and str(smtp.reply_to))


def store_org(settings: Settings, crm: CrmKind) -> str:
    """The store org ``crm``'s data lives under: its configured org id, else
    :data:`DEFAULT_ORG_ID`. Every entry point (CLI, sync, worker, web) uses this."""
    return configured_org(settings, crm) or DEFAULT_ORG_ID


def enabled_crms(settings: Settings) -> list[CrmKind]:
    """The CRMs with ``enabled = true``, in a stable order."""
    return [crm for crm in ORG_KEYS if getattr(settings, crm.value).enabled]


def store_orgs(
    settings: Settings, crms: Iterable[CrmKind] | None = None
) -> dict[str, list[CrmKind]]:
    """``crms`` (default: the enabled ones) grouped by their :func:`store_org`, in order."""
    grouped: dict[str, list[CrmKind]] = {}
    for crm in enabled_crms(settings) if crms is None else sorted(crms):
        grouped.setdefault(store_org(settings, crm), []).append(crm)
    return dict(sorted(grouped.items()))


def org_for_cli(settings: Settings, explicit: str | None) -> str:
    """The org a per-org command (senders, rotations, contacts) works in: ``--org`` when
    given, else the one org the enabled CRMs live under (:data:`DEFAULT_ORG_ID` when none
    is enabled); several orgs must be chosen between."""
    if explicit is not None:
        return explicit
    orgs = store_orgs(settings)
    if len(orgs) <= 1:
        return next(iter(orgs), DEFAULT_ORG_ID)
    choices = "; ".join(
        f"{org} ({', '.join(crm.value for crm in crms)})" for org, crms in orgs.items()
    )
    raise ValidationError(
        "org",
        f"the enabled CRMs live under several orgs: {choices}",
        hint="Pass --org with one of them.",
    )


ConnectorFactory = Callable[[CrmKind], Connector]
ProviderFactory = Callable[[str], ConferencingProvider]
_Key = TypeVar("_Key")
_Client = TypeVar("_Client", Connector, ConferencingProvider)


class Clients:
    """The process's CRM connectors and conferencing providers, built once, closed once.

    ``crms`` and ``providers`` are what this deployment has configured; asking for another
    raises :attr:`unavailable` (a subclass may name its own, e.g. the web's 503). Safe to
    share between request threads.
    """

    #: the error for a CRM this deployment has not configured, or after ``close``
    unavailable: type[ConfigurationError] = ConfigurationError

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
    def from_settings(cls, settings: Settings) -> Self:
        """The CRMs and providers ``settings`` enable, built by the registry and factory."""
        from crm_meetings.conferencing.factory import from_settings
        from crm_meetings.connectors.registry import CONNECTORS, build_connector

        return cls(
            lambda crm: build_connector(crm.value, settings),
            lambda name: from_settings(getattr(settings, name)),
            crms=[crm for crm in enabled_crms(settings) if crm.value in CONNECTORS],
            providers=[n for n in PROVIDERS if getattr(settings, n).enabled],
        )

    @property
    def default_provider(self) -> str | None:
        """The provider new meetings are scheduled on (the first enabled one)."""
        return self.providers[0] if self.providers else None

    def connector(self, crm: CrmKind) -> Connector:
        """The connector of ``crm`` (503 ``actions_unavailable`` when not configured)."""
        if crm not in self.crms:
            raise self.unavailable(
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

    def providers_by_name(self) -> Mapping[str, ConferencingProvider]:
        """Every configured provider by name, each built on first lookup (a meeting's
        edit, cancel or delete needs only its own provider): what
        :attr:`crm_meetings.actions.ActionContext.providers` takes."""
        return _ProvidersByName(self)

    def _cached(
        self, cache: dict[_Key, _Client], key: _Key, build: Callable[[_Key], _Client]
    ) -> _Client:
        with self._lock:
            if self._closed:
                raise self.unavailable(
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


class _ProvidersByName(Mapping[str, ConferencingProvider]):
    """:meth:`Clients.providers_by_name`: the configured names; a provider is built (and
    kept by the clients) when it is looked up, so a failing one fails only its lookup."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    def __getitem__(self, name: str) -> ConferencingProvider:
        found = self._clients.provider(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._clients.providers

    def __iter__(self) -> Iterator[str]:
        return iter(self._clients.providers)

    def __len__(self) -> int:
        return len(self._clients.providers)
