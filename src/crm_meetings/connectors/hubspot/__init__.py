"""HubSpot: meetings on hubspot-api-client (:class:`HubSpotConnector`), pure mapping in
:mod:`.mapping`, the SDK wiring (host, CA, retries, accounting) in :mod:`.client`."""

from crm_meetings.connectors.hubspot.client import HubSpotHttp, OAuthCredentials
from crm_meetings.connectors.hubspot.connector import HubSpotConnector
from crm_meetings.connectors.hubspot.mapping import (
    Associations,
    Contact,
    hubspot_properties,
    meeting_from_hubspot,
)

__all__ = [
    "Associations",
    "Contact",
    "HubSpotConnector",
    "HubSpotHttp",
    "OAuthCredentials",
    "hubspot_properties",
    "meeting_from_hubspot",
]
