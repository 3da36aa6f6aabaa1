"""Zoho connector tests: recordings, a sandbox with only the Zoho emulator, a connector on it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.connectors.zoho import ZohoConnector, ZohoCredentials
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

RECORDINGS = Path(__file__).parents[3] / "recordings" / "zoho"
FAST = RetryPolicy(attempts=4, base=0.001, cap=0.005)


def recording(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((RECORDINGS / name).read_text())
    assert loaded["source"].startswith("https://")
    return loaded


def settled_calls(sandbox: Sandbox, **filters: Any) -> int:
    """The sandbox's count once it stops moving (it records a call after answering it)."""
    last = -1
    for _ in range(50):
        now = sandbox.calls.count("zoho", **filters)
        if now == last:
            return now
        last = now
        time.sleep(0.01)
    return last


def connector_for(sandbox: Sandbox, **kwargs: Any) -> ZohoConnector:
    url = sandbox.url("zoho")
    credentials = ZohoCredentials(
        "1000.TEST", "secret", sandbox.refresh_token("zoho"), sandbox.token("zoho")
    )
    options: dict[str, Any] = {"retry_policy": FAST, "timeout": 10.0, **kwargs}
    return ZohoConnector(
        credentials, api_url=url, accounts_url=url, verify=sandbox.ca_path, **options
    )


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(["zoho"], seed=SeedSpec(seed=3, meetings=6, records=3))
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def connector(sandbox: Sandbox) -> Iterator[ZohoConnector]:
    with connector_for(sandbox) as opened:
        yield opened
