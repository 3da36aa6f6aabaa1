"""Connectors built from crm-meetings.toml, talking to the sandbox: what doctor checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_meetings.config import Settings, load_settings
from crm_meetings.connectors.registry import build_connector, enabled_connectors
from crm_meetings.errors import ConfigurationError, ValidationError
from crm_meetings.model import CrmKind
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(["salesforce", "hubspot", "zoho"], seed=SeedSpec(meetings=2, records=2))
    box.start()
    try:
        yield box
    finally:
        box.stop()


def settings_for(sandbox: Sandbox, tmp_path: Path, *, enable: tuple[str, ...]) -> Settings:
    ca = sandbox.ca_path
    sf, hs, zo = (sandbox.url(v) for v in ("salesforce", "hubspot", "zoho"))
    text = f"""
[salesforce]
enabled = {str("salesforce" in enable).lower()}
instance_url = "{sf}"
login_url = "{sf}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token = "{sandbox.refresh_token("salesforce")}"
ca_bundle = "{ca}"

[hubspot]
enabled = {str("hubspot" in enable).lower()}
base_url = "{hs}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token = "{sandbox.refresh_token("hubspot")}"
ca_bundle = "{ca}"

[zoho]
enabled = {str("zoho" in enable).lower()}
accounts_url = "{zo}"
api_domain = "{zo}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token = "{sandbox.refresh_token("zoho")}"
ca_bundle = "{ca}"
"""
    path = tmp_path / "crm-meetings.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


@pytest.mark.parametrize("name", ["salesforce", "hubspot", "zoho"])
def test_each_configured_connector_passes_doctor(
    sandbox: Sandbox, tmp_path: Path, name: str
) -> None:
    settings = settings_for(sandbox, tmp_path, enable=(name,))
    connector = build_connector(name, settings)
    try:
        assert connector.crm is CrmKind(name)
        checks = connector.check()
        assert checks
        assert all(c.ok for c in checks), [(c.name, c.detail, c.fix) for c in checks if not c.ok]
    finally:
        connector.close()


def test_enabled_connectors_builds_only_the_enabled_ones(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = settings_for(sandbox, tmp_path, enable=("hubspot", "zoho"))
    connectors = enabled_connectors(settings)
    try:
        assert set(connectors) == {CrmKind.HUBSPOT, CrmKind.ZOHO}
    finally:
        for connector in connectors.values():
            connector.close()


def test_unknown_and_disabled_crms_say_what_to_do(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = settings_for(sandbox, tmp_path, enable=())
    with pytest.raises(ValidationError, match="valid names: hubspot, salesforce, zoho"):
        build_connector("pipedrive", settings)
    with pytest.raises(ConfigurationError) as info:
        build_connector("zoho", settings)
    assert info.value.key == "zoho.enabled"
    assert "enabled = true" in info.value.hint
