"""The HubSpot connector in the contract suite: hubspot-api-client over HTTPS to the sandbox."""

from __future__ import annotations

from crm_meetings.connectors.base import Connector
from crm_meetings.connectors.hubspot import HubSpotConnector, OAuthCredentials
from crm_meetings.model import RecordRef
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

VENDOR = "hubspot"


def make_connector(sandbox: Sandbox, *, timeout: float = 10.0) -> Connector:
    connector = HubSpotConnector(
        sandbox.token(VENDOR),
        base_url=sandbox.url(VENDOR),
        ca_path=sandbox.ca_path,
        oauth=OAuthCredentials(sandbox.refresh_token(VENDOR), "client-id", "client-secret"),
        retry_policy=RetryPolicy(attempts=4, base=0.01, cap=0.05),
        timeout=timeout,
    )
    connector.load_owners()  # what a worker does once at startup; batch counts measure writes
    stop = sandbox.stop

    def close_then_stop() -> None:  # idle keep-alive TLS connections would outlive the server
        connector.close()
        stop()

    sandbox.stop = close_then_stop  # type: ignore[method-assign]
    return connector


def related_record(sandbox: Sandbox) -> RecordRef:
    companies = [
        link[3]
        for link in sandbox.emulator(VENDOR).state()["associations"]
        if link[2] == "companies"
    ]
    return RecordRef("Company", companies[0])


def logged_emails(sandbox: Sandbox) -> list[tuple[str, str]]:
    """(subject, company it is associated with) of every emails engagement."""
    state = sandbox.emulator(VENDOR).state()
    company = {link[1]: link[3] for link in state["email_associations"] if link[2] == "companies"}
    return sorted((e["properties"]["hs_email_subject"], company[e["id"]]) for e in state["emails"])
