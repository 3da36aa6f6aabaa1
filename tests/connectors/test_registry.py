"""Connectors built from crm-meetings.toml, talking to the sandbox: what doctor checks."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiosmtpd.controller import Controller

from crm_meetings.config import load_settings
from crm_meetings.connectors.registry import build_connector, enabled_connectors
from crm_meetings.errors import ConfigurationError, ValidationError
from crm_meetings.model import CrmKind
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox

if TYPE_CHECKING:
    from conftest import SandboxConfig


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(
        ["salesforce", "hubspot", "zoho", "zoom", "goto"], seed=SeedSpec(meetings=2, records=2)
    )
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.mark.parametrize("name", ["salesforce", "hubspot", "zoho"])
def test_each_configured_connector_passes_doctor(
    sandbox: Sandbox, sandbox_config: SandboxConfig, name: str
) -> None:
    settings = load_settings(sandbox_config(sandbox, enable=(name,)), env={})
    connector = build_connector(name, settings)
    try:
        assert connector.crm is CrmKind(name)
        checks = connector.check()
        assert checks
        assert all(c.ok for c in checks), [(c.name, c.detail, c.fix) for c in checks if not c.ok]
    finally:
        connector.close()


def test_enabled_connectors_builds_only_the_enabled_ones(
    sandbox: Sandbox, sandbox_config: SandboxConfig
) -> None:
    settings = load_settings(sandbox_config(sandbox, enable=("hubspot", "zoho")), env={})
    connectors = enabled_connectors(settings)
    try:
        assert set(connectors) == {CrmKind.HUBSPOT, CrmKind.ZOHO}
    finally:
        for connector in connectors.values():
            connector.close()


def test_unknown_and_disabled_crms_say_what_to_do(
    sandbox: Sandbox, sandbox_config: SandboxConfig
) -> None:
    settings = load_settings(sandbox_config(sandbox), env={})
    with pytest.raises(ValidationError, match="valid names: hubspot, salesforce, zoho"):
        build_connector("pipedrive", settings)
    with pytest.raises(ConfigurationError) as info:
        build_connector("zoho", settings)
    assert info.value.key == "zoho.enabled"
    assert "enabled = true" in info.value.hint


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("crm-meetings")
    return subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_doctor_checks_every_enabled_service(
    sandbox: Sandbox, sandbox_config: SandboxConfig, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = Controller(Sink(), hostname="127.0.0.1", port=port)
    sink.start()
    try:
        config = sandbox_config(
            sandbox,
            enable=("salesforce", "hubspot", "zoho", "zoom"),
            extra=f'[smtp]\nhost = "127.0.0.1"\nport = {port}\n'
            'security = "none"\nfrom_address = "meetings@firm.example"\n',
        )
        assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path).returncode == 0
        result = run_cli("--config", str(config), "doctor", cwd=tmp_path)
    finally:
        sink.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("salesforce", "hubspot", "zoho", "zoom", "smtp"):
        assert name in result.stdout
    assert "All checks passed." in result.stdout
    assert "sandbox-secret" not in result.stdout + result.stderr


def test_doctor_names_a_bad_token_and_says_how_to_fix_it(
    sandbox: Sandbox, sandbox_config: SandboxConfig, tmp_path: Path
) -> None:
    config = sandbox_config(sandbox, enable=("hubspot",))
    config.write_text(_replace_refresh(config.read_text(), "hubspot", "revoked-refresh-token"))
    assert run_cli("--config", str(config), "db", "upgrade", cwd=tmp_path).returncode == 0
    result = run_cli("--config", str(config), "doctor", cwd=tmp_path)
    assert result.returncode == 1
    assert "hubspot" in result.stdout
    assert "FAIL" in result.stdout
    assert "revoked-refresh-token" not in result.stdout


def _replace_refresh(text: str, section: str, token: str) -> str:
    head, _, rest = text.partition(f"[{section}]")
    body, sep, tail = rest.partition("\n[")
    lines = [
        f'refresh_token = "{token}"' if line.startswith("refresh_token") else line
        for line in body.splitlines()
    ]
    return head + f"[{section}]" + "\n".join(lines) + sep + tail


class Sink:
    """An SMTP handler that accepts everything (doctor only says hello)."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"
