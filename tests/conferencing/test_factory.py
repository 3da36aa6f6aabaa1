"""Providers built from the [zoom] / [goto] configuration sections, run against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crm_meetings.conferencing import GoToProvider, ZoomProvider
from crm_meetings.conferencing.factory import from_settings
from crm_meetings.config import GoToSettings, ZoomSettings
from crm_meetings.errors import ConfigurationError
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.testing import SandboxFactory

SEED = SeedSpec(seed=7, meetings=12, organizers=2, records=4, started_share=0.8)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)


def test_both_sections_build_working_providers(sandbox_factory: SandboxFactory) -> None:
    box = sandbox_factory(["zoom", "goto"], seed=SEED)
    zoom = from_settings(
        ZoomSettings(
            enabled=True, base_url=box.url("zoom") + "/v2",
            token_url=box.url("zoom") + "/oauth/token", ca_bundle=box.ca_path,
            account_id="acct", client_id="id", client_secret=box.refresh_token("zoom"),
        )
    )  # fmt: skip
    goto = from_settings(
        GoToSettings(
            enabled=True, base_url=box.url("goto"), token_url=box.url("goto") + "/oauth/token",
            ca_bundle=box.ca_path, client_id="id", client_secret="secret",
            refresh_token=box.refresh_token("goto"),
        )
    )  # fmt: skip
    assert isinstance(zoom, ZoomProvider)
    assert isinstance(goto, GoToProvider)
    try:
        for provider in (zoom, goto):
            assert [c.ok for c in provider.check()] == [True, True]
            hosts = ("rep0@sales.example.com", "rep1@sales.example.com")
            assert any(list(provider.meetings_ran(host, NOV, DEC)) for host in hosts)
    finally:
        zoom.close()
        goto.close()


def test_missing_credentials_name_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"zoom\.account_id"):
        from_settings(ZoomSettings(client_id="id", client_secret="s"))
    with pytest.raises(ConfigurationError, match=r"goto\.refresh_token"):
        from_settings(GoToSettings(client_id="id", client_secret="s"))
