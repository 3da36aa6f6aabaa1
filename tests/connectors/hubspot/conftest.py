"""HubSpot connector tests: the real SDK over HTTPS against a fresh sandbox per test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.connectors.hubspot import HubSpotConnector, OAuthCredentials
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.transport import RetryPolicy

RECORDINGS = Path(__file__).parents[3] / "recordings" / "hubspot"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.01)


def _recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / name).read_text())
    assert data["source"].startswith("https://developers.hubspot.com/")
    return data


@pytest.fixture
def recording() -> Callable[[str], dict[str, Any]]:
    """Load ``recordings/hubspot/<name>`` (each names the reference page it comes from)."""
    return _recording


@pytest.fixture
def hubspot_calls(sandbox: Sandbox) -> Callable[[], int]:
    """HubSpot calls the sandbox counted, once the last one has been recorded."""

    def settled() -> int:
        seen = -1
        for _ in range(50):
            now = sandbox.calls.count("hubspot")
            if now == seen:
                return now
            seen = now
            time.sleep(0.01)
        return seen

    return settled


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(["hubspot"], seed=SeedSpec(seed=3, meetings=6, records=3)).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def connector(sandbox: Sandbox) -> Iterator[HubSpotConnector]:
    made = HubSpotConnector(
        sandbox.token("hubspot"),
        base_url=sandbox.url("hubspot"),
        ca_path=sandbox.ca_path,
        oauth=OAuthCredentials(sandbox.refresh_token("hubspot"), "id", "secret"),
        retry_policy=FAST,
    )
    made.load_owners()
    try:
        yield made
    finally:
        made.close()
