"""Later features add doctor checks and demo steps: a crash in one is reported, not fatal."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from crm_meetings import cli
from crm_meetings.commands import CheckResult, DemoRun
from crm_meetings.config import Settings
from crm_meetings.errors import RemoteError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No crm-meetings.toml, no CRM_MEETINGS_* variables; logging restored afterwards."""
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("CRM_MEETINGS_")]:
        monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def check_fine(settings: Settings) -> CheckResult:
    return CheckResult("fine", True, f"sync at {settings.sync.hour:02d}:{settings.sync.minute:02d}")


def check_not_enabled(settings: Settings) -> CheckResult | None:
    return None


def check_hubspot_token(settings: Settings) -> CheckResult:
    raise RemoteError("token rejected", vendor="hubspot", status=401)


def check_buggy_thing(settings: Settings) -> CheckResult:
    raise KeyError("oops")


def test_doctor_runs_every_check_and_reports_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = [check_fine, check_not_enabled, check_hubspot_token, check_buggy_thing]
    monkeypatch.setattr(cli, "DOCTOR_CHECKS", checks)
    result = CliRunner().invoke(cli.app, ["doctor"], env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "sync at 02:00" in result.output
    assert "not enabled" not in result.output
    assert "hubspot: token rejected (HTTP 401)" in result.output
    assert "buggy thing" in result.output
    assert "KeyError: 'oops'" in result.output
    assert "2 check(s) failed: hubspot token, buggy thing" in result.output


def step_one(run: DemoRun) -> str:
    (run.out / "one.txt").write_text("1", encoding="utf-8")
    return "wrote one.txt"


def step_broken(run: DemoRun) -> str:
    raise RemoteError("sandbox down", vendor="zoho", status=503)


def step_never(run: DemoRun) -> str:
    raise AssertionError("a failed step stops the run")


def test_demo_stops_at_a_failed_step_and_still_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "DEMO_STEPS", [step_one, step_broken, step_never])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.app, ["demo", "--out", str(out)])
    assert result.exit_code == 1
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["ok"] is False
    assert report["steps"] == [
        {"step": "one", "ok": True, "detail": "wrote one.txt"},
        {
            "step": "broken",
            "ok": False,
            "detail": "zoho: sandbox down (HTTP 503)",
            "hint": RemoteError.default_hint,
        },
    ]
    assert (out / "one.txt").read_text(encoding="utf-8") == "1"
    assert "✗ broken: zoho: sandbox down (HTTP 503)" in result.output
