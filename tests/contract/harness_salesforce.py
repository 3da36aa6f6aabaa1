"""The Salesforce connector on the sandbox, for the shared contract suite."""

from __future__ import annotations

from crm_meetings.connectors.salesforce import SalesforceConnector
from crm_meetings.model import RecordRef
from crm_meetings.sandbox.salesforce import SalesforceEmulator
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

VENDOR = "salesforce"
FAST_RETRIES = RetryPolicy(attempts=4, base=0.01, cap=0.05)


def make_connector(sandbox: Sandbox, *, timeout: float = 10.0) -> SalesforceConnector:
    """simple-salesforce over HTTPS to the emulator, with a refresh token and tiny waits."""
    url = sandbox.url(VENDOR)
    connector = SalesforceConnector(
        instance_url=url,
        access_token=sandbox.token(VENDOR),
        refresh_token=sandbox.refresh_token(VENDOR),
        client_id="sandbox-client",
        client_secret="sandbox-secret",
        token_url=f"{url}/services/oauth2/token",
        ca_path=sandbox.ca_path,
        timeout=timeout,
        retry_policy=FAST_RETRIES,
    )
    _close_before_stop(sandbox, connector)
    return connector


def _close_before_stop(sandbox: Sandbox, connector: SalesforceConnector) -> None:
    """Close the client's keep-alive TLS connections before the servers stop.

    An idle TLS connection left open makes uvicorn wait out its graceful-shutdown timeout
    and leave the server transport unclosed (a ResourceWarning, an error under
    filterwarnings=error). The rig does not close connectors, so the harness does.
    """
    stop = sandbox.stop

    def stop_after_closing() -> None:
        connector.close()
        stop()

    sandbox.stop = stop_after_closing  # type: ignore[method-assign]


def related_record(sandbox: Sandbox) -> RecordRef:
    """The first seeded Account."""
    emulator = sandbox.emulator(VENDOR)
    assert isinstance(emulator, SalesforceEmulator)
    return RecordRef("Account", emulator.seed_ids["record-0"])


def logged_emails(sandbox: Sandbox) -> list[tuple[str, str]]:
    """(subject, record it is logged on) of every EmailMessage."""
    rows = sandbox.emulator(VENDOR).state()["emails"]
    return sorted((r["Subject"], r["RelatedToId"]) for r in rows)
