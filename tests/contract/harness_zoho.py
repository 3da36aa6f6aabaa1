"""Zoho CRM in the contract suite: :class:`ZohoConnector` over HTTPS against the sandbox."""

from __future__ import annotations

from crm_meetings.connectors.base import Connector
from crm_meetings.connectors.zoho import ZohoConnector, ZohoCredentials
from crm_meetings.model import RecordRef
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

VENDOR = "zoho"


def make_connector(sandbox: Sandbox, *, timeout: float = 10.0) -> Connector:
    url = sandbox.url(VENDOR)
    credentials = ZohoCredentials(
        client_id="1000.SANDBOX",
        client_secret="sandbox-secret",
        refresh_token=sandbox.refresh_token(VENDOR),
        access_token=sandbox.token(VENDOR),
    )
    return ZohoConnector(
        credentials,
        api_url=url,
        accounts_url=url,
        verify=sandbox.ca_path,
        timeout=timeout,
        retry_policy=RetryPolicy(attempts=4, base=0.01, cap=0.05),
    )


def related_record(sandbox: Sandbox) -> RecordRef:
    account = sandbox.emulator(VENDOR).records("Accounts")[0]  # type: ignore[attr-defined]
    return RecordRef("Accounts", account["id"])


def logged_emails(sandbox: Sandbox) -> list[tuple[str, str]]:
    """(title, parent record) of every note."""
    notes = sandbox.emulator(VENDOR).state()["notes"]  # type: ignore[attr-defined]
    return sorted((n["Note_Title"], n["Parent_Id"]["id"]) for n in notes)
