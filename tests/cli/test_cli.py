"""The installed `crm-meetings` console script, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from crm_meetings import __version__
from crm_meetings.store import head

SCRIPT = Path(sys.executable).with_name("crm-meetings")
SECRETS = ("hubspot-token-never-shown", "zoho-secret-from-a-file", "db-password-never-shown")


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``crm-meetings ARGS`` in ``cwd`` with only ``env`` as CRM_MEETINGS_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MEETINGS_")}
    clean.update({"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty current directory; its SQLite store would live in ./data."""
    return tmp_path


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.is_file(), f"run `make install`: {SCRIPT} is missing"


def test_version(workdir: Path) -> None:
    result = run("version", cwd=workdir)
    assert result.returncode == 0
    assert result.stdout.strip() == __version__


@pytest.mark.parametrize(
    "args",
    [(), ("no-such-command",), ("--log-level", "loud", "version"), ("demo", "--bogus")],
)
def test_usage_errors_exit_2(workdir: Path, args: tuple[str, ...]) -> None:
    result = run(*args, cwd=workdir)
    assert result.returncode == 2
    assert "Usage: crm-meetings" in result.stdout + result.stderr


def test_config_show_prints_toml_without_secrets(workdir: Path) -> None:
    secret_file = workdir / "zoho-secret"
    secret_file.write_text(SECRETS[1] + "\n", encoding="utf-8")
    (workdir / "crm-meetings.toml").write_text(
        f'[zoho]\nenabled = true\nclient_id = "1000.X"\nclient_secret_file = "{secret_file}"\n'
        'refresh_token = "zoho-refresh-token-in-toml"\n[sync]\nhour = 5\n',
        encoding="utf-8",
    )
    env = {
        "CRM_MEETINGS_HUBSPOT__ACCESS_TOKEN": SECRETS[0],
        "CRM_MEETINGS_STORE__URL": f"postgresql://crm:{SECRETS[2]}@db.example:5432/crm",
    }
    result = run("--log-level", "debug", "config", "show", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    for secret in (*SECRETS, "zoho-refresh-token-in-toml"):
        assert secret not in result.stdout + result.stderr
    assert "[sync]\nenabled = true\nhour = 5\n" in result.stdout
    assert 'access_token = "***"' in result.stdout
    assert 'client_secret = "***"' in result.stdout
    assert "# client_secret = (not set)" in result.stdout  # hubspot's
    assert 'url = "postgresql://crm:***@db.example:5432/crm"' in result.stdout
    assert tomllib.loads(result.stdout)["sync"]["hour"] == 5  # the output is TOML


def test_config_show_json_without_secrets(workdir: Path) -> None:
    env = {"CRM_MEETINGS_HUBSPOT__ACCESS_TOKEN": SECRETS[0], "CRM_MEETINGS_SYNC__HOUR": "6"}
    result = run("config", "show", "--json", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert SECRETS[0] not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["sync"]["hour"] == 6
    assert shown["hubspot"]["access_token"] == "***"
    assert shown["web"]["session_secret"] == "(not set)"


def test_config_option_names_the_file(workdir: Path) -> None:
    config = workdir / "other.toml"
    config.write_text("[sync]\nminute = 45\n", encoding="utf-8")
    result = run("--config", str(config), "config", "show", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sync"]["minute"] == 45


def test_bad_configuration_exits_1_with_key_and_hint_and_no_traceback(workdir: Path) -> None:
    (workdir / "crm-meetings.toml").write_text('[sync]\ntimezone = "Mars/Olympus"\n')
    result = run("config", "show", cwd=workdir)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Error: sync.timezone is invalid: 'Mars/Olympus' is not a timezone" in result.stderr
    assert "IANA name such as Europe/Paris" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_secret_exits_1_naming_the_key_and_both_ways(workdir: Path) -> None:
    env = {"CRM_MEETINGS_SALESFORCE__ENABLED": "true", "CRM_MEETINGS_SALESFORCE__CLIENT_ID": "x"}
    result = run("config", "show", cwd=workdir, env=env)
    assert result.returncode == 1
    assert "salesforce.client_secret is required" in result.stderr
    assert "CRM_MEETINGS_SALESFORCE__CLIENT_SECRET," in result.stderr
    assert "salesforce.client_secret_file" in result.stderr


def test_db_upgrade_then_doctor(workdir: Path) -> None:
    before = run("doctor", cwd=workdir)
    assert before.returncode == 1
    assert "does not exist yet" in before.stdout
    assert "crm-meetings db upgrade" in before.stdout
    assert not (workdir / "data").exists(), "doctor must not create the database"

    first = run("db", "upgrade", cwd=workdir)
    assert first.returncode == 0, first.stderr
    database = workdir / "data" / "crm-meetings.db"
    assert first.stdout.strip() == f"SQLite database {database}: empty → {head()}"
    again = run("db", "upgrade", cwd=workdir)
    assert again.stdout.strip().endswith(f": {head()} → {head()}")

    after = run("doctor", cwd=workdir)
    assert after.returncode == 0, after.stdout
    assert f"at revision {head()}" in after.stdout
    assert "defaults and CRM_MEETINGS_* variables (no crm-meetings.toml); enabled: none" in (
        after.stdout
    )
    assert "All checks passed." in after.stdout


def test_unreachable_database_exits_1_without_the_password(workdir: Path) -> None:
    env = {"CRM_MEETINGS_STORE__URL": f"postgresql://crm:{SECRETS[2]}@127.0.0.1:1/crm"}
    upgrade = run("db", "upgrade", cwd=workdir, env=env)
    assert upgrade.returncode == 1
    assert "Error: Cannot use PostgreSQL database crm on 127.0.0.1:1" in upgrade.stderr
    assert "Traceback" not in upgrade.stderr
    doctor = run("doctor", cwd=workdir, env=env)
    assert doctor.returncode == 1
    assert "FAIL" in doctor.stdout
    for result in (upgrade, doctor):
        assert SECRETS[2] not in result.stdout + result.stderr


def test_doctor_reports_a_configuration_it_cannot_load(workdir: Path) -> None:
    result = run("doctor", cwd=workdir, env={"CRM_MEETINGS_SYNC__HOUR": "99"})
    assert result.returncode == 1
    assert "configuration" in result.stdout
    assert "sync.hour is invalid" in result.stdout
    assert "1 check(s) failed: configuration" in result.stdout


def test_demo_writes_a_report(workdir: Path) -> None:
    out = workdir / "demo-out"
    result = run("demo", "--out", str(out), cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["ok"] is True
    names = [step["step"] for step in report["steps"]]
    assert names[:3] == ["create store", "migrate", "start sandbox"]  # tests/demo: the rest
    assert all(step["ok"] and step["detail"] for step in report["steps"])
    assert f"migrated empty → {head()}" in result.stdout
    assert f"Report: {out / 'report.json'}" in result.stdout
    assert not (workdir / "data").exists(), "the demo's store is thrown away"


def test_log_json_writes_json_lines_to_stderr(workdir: Path) -> None:
    result = run("--log-json", "--log-level", "debug", "db", "upgrade", cwd=workdir)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "debug logging should say something"
    events = [json.loads(line) for line in lines]
    assert all({"event", "level", "timestamp", "logger"} <= event.keys() for event in events)
    assert "→" in result.stdout


def test_outbox_list_on_a_fresh_store(workdir: Path) -> None:
    assert run("db", "upgrade", cwd=workdir).returncode == 0
    listed = run("outbox", "list", cwd=workdir)
    assert listed.returncode == 0, listed.stderr
    assert "The outbox is empty." in listed.stdout


SUB_APPS = ["sandbox", "web", "rotation", "senders", "contacts", "outbox", "sync", "worker"]


@pytest.mark.parametrize("command", [*SUB_APPS, "meeting"])
def test_every_sub_app_is_wired(workdir: Path, command: str) -> None:
    shown = run(command, "--help", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert f"crm-meetings {command}" in shown.stdout


def test_rotation_pick_through_the_console_script(workdir: Path) -> None:
    assert run("db", "upgrade", cwd=workdir).returncode == 0
    created = run("rotation", "create", "Inbound", "--member", "b@x.com", "--member", "a@x.com",
                  cwd=workdir)  # fmt: skip
    assert created.returncode == 0, created.stderr
    picked = run("rotation", "pick", "Inbound", "--json", cwd=workdir)
    assert picked.returncode == 0, picked.stderr
    assert json.loads(picked.stdout)["explanation"]["chosen"] == "a@x.com"
    assert json.loads(run("contacts", "firm", "--json", cwd=workdir).stdout) == []
