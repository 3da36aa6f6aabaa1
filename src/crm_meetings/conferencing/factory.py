"""Build a conferencing provider from its configuration section (``[zoom]`` / ``[goto]``).

::

    provider = from_settings(settings.zoom)           # the real cloud
    provider = from_settings(settings.goto, on_rotate=store_refresh_token)

``ca_bundle`` (the sandbox's test CA) becomes the TLS trust; a Zoom ``base_url`` given with
its ``/v2`` suffix is accepted (the providers add ``/v2`` to their paths themselves).
"""

from __future__ import annotations

from collections.abc import Callable

from crm_meetings.conferencing._http import HttpSettings
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.conferencing.goto import GoToProvider
from crm_meetings.conferencing.oauth import AccountCredentials, RefreshTokenGrant
from crm_meetings.conferencing.zoom import ZoomProvider
from crm_meetings.config import GoToSettings, ZoomSettings
from crm_meetings.errors import ConfigurationError
from crm_meetings.transport import CallCounter, RetryPolicy

__all__ = ["from_settings"]


def _secret(value: object, key: str) -> str:
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    if not isinstance(text, str) or not text:
        raise ConfigurationError("is not set", key=key)
    return text


def from_settings(
    section: ZoomSettings | GoToSettings,
    *,
    calls: CallCounter | None = None,
    retry: RetryPolicy | None = None,
    on_rotate: Callable[[str], None] | None = None,
) -> ConferencingProvider:
    """The provider the section configures (its credentials must be set)."""
    zoom = isinstance(section, ZoomSettings)
    name = "zoom" if zoom else "goto"
    api_url = section.base_url.rstrip("/")
    if zoom and api_url.endswith("/v2"):
        api_url = api_url[: -len("/v2")]
    settings = HttpSettings(
        api_url=api_url,
        token_url=section.token_url,
        verify=section.ca_bundle if section.ca_bundle is not None else True,
        retry=retry or RetryPolicy(),
    )
    client_id = section.client_id or ""
    if not client_id:
        raise ConfigurationError("is not set", key=f"{name}.client_id")
    secret = _secret(section.client_secret, f"{name}.client_secret")
    if isinstance(section, ZoomSettings):
        account = section.account_id or ""
        if not account:
            raise ConfigurationError("is not set", key="zoom.account_id")
        return ZoomProvider(AccountCredentials(account, client_id, secret), settings, calls=calls)
    grant = RefreshTokenGrant(
        client_id, secret, _secret(section.refresh_token, "goto.refresh_token"), on_rotate
    )
    return GoToProvider(grant, settings, calls=calls)
