"""The CRM connectors and conferencing providers one process uses, built once, closed once.

The worker, the sync jobs and the web app share this: a connector or provider is built
from the settings the first time it is needed (:mod:`crm_meetings.connectors.registry`,
:mod:`crm_meetings.conferencing.factory`) and every one is closed together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Final, Self, TypeVar

from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.config import Settings
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import ConfigurationError
from crm_meetings.model import CrmKind

__all__ = ["PROVIDERS", "Clients"]

#: the conferencing providers, in the order the first enabled one is the default
PROVIDERS: Final = ("zoom", "goto")

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
