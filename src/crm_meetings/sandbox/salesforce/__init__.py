"""The Salesforce emulator (REST API, sObject Collections, SOQL, OAuth) for the sandbox."""

from crm_meetings.sandbox.salesforce.emulator import SalesforceEmulator

__all__ = ["SalesforceEmulator"]
