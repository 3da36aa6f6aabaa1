"""The HubSpot emulator (CRM v3 objects, v4 associations, owners, properties, OAuth)."""

from crm_meetings.sandbox.hubspot.emulator import HubSpotEmulator

__all__ = ["HubSpotEmulator"]
