"""Zoho CRM: the connector (REST API v8 over httpx) and its pure record mapping.

See :mod:`.connector` for why no SDK is used and :mod:`.mapping` for the field mapping and
where session history lands (the ``CRM_Meeting_Sessions`` module).
"""

from crm_meetings.connectors.zoho.connector import DATA_CENTERS, ZohoConnector, ZohoCredentials
from crm_meetings.connectors.zoho.mapping import meeting_from_zoho, zoho_record

__all__ = ["DATA_CENTERS", "ZohoConnector", "ZohoCredentials", "meeting_from_zoho", "zoho_record"]
