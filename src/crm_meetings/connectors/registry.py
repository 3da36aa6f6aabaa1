"""Connectors by name, built from the settings: what the CLI, the worker and the web use.

``build_connector("hubspot", settings)`` gives the configured HubSpot connector; an
unknown name lists the valid ones, a disabled CRM says how to enable it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from crm_meetings.config import HubSpotSettings, Settings, ZohoSettings
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import ConfigurationError, ValidationError
from crm_meetings.model import CrmKind

__all__ = ["CONNECTORS", "build_connector", "enabled_connectors"]


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _salesforce(settings: Settings) -> Connector:
    from crm_meetings.connectors.salesforce import SalesforceConnector

    return SalesforceConnector.from_settings(settings.salesforce)


def _hubspot(settings: Settings) -> Connector:
    from crm_meetings.connectors.hubspot import HubSpotConnector, OAuthCredentials

    section: HubSpotSettings = settings.hubspot
    refresh = _secret(section.refresh_token)
    oauth = (
        OAuthCredentials(refresh, section.client_id or "", _secret(section.client_secret) or "")
        if refresh
        else None
    )
    return HubSpotConnector(
        _secret(section.access_token) or "",
        base_url=str(section.base_url),
        ca_path=section.ca_bundle,
        api_version=section.api_path_version,
        oauth=oauth,
    )


def _zoho(settings: Settings) -> Connector:
    from crm_meetings.connectors.zoho import ZohoConnector, ZohoCredentials

    section: ZohoSettings = settings.zoho
    credentials = ZohoCredentials(
        section.client_id or "",
        _secret(section.client_secret) or "",
        _secret(section.refresh_token) or "",
    )
    return ZohoConnector(
        credentials,
        data_center=section.data_center,
        api_url=section.api_base,
        api_version=section.api_version,
        accounts_url=section.accounts_base,
        verify=section.ca_bundle if section.ca_bundle is not None else True,
    )


CONNECTORS: Final[Mapping[str, Callable[[Settings], Connector]]] = {
    CrmKind.SALESFORCE.value: _salesforce,
    CrmKind.HUBSPOT.value: _hubspot,
    CrmKind.ZOHO.value: _zoho,
}


def build_connector(name: str, settings: Settings) -> Connector:
    """The connector for CRM ``name`` as ``settings`` configure it."""
    factory = CONNECTORS.get(name)
    if factory is None:
        raise ValidationError(
            "crm", f"unknown CRM {name!r}; valid names: {', '.join(sorted(CONNECTORS))}"
        )
    if not getattr(settings, name).enabled:
        raise ConfigurationError(
            "is false",
            key=f"{name}.enabled",
            hint=f"Set [{name}] enabled = true and its credentials in crm-meetings.toml.",
        )
    return factory(settings)


def enabled_connectors(settings: Settings) -> dict[CrmKind, Connector]:
    """Every enabled CRM's connector."""
    return {
        CrmKind(name): build_connector(name, settings)
        for name in CONNECTORS
        if getattr(settings, name).enabled
    }
