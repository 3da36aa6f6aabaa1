"""`crm-meetings sync schedule`: the nightly time changed from the CLI, no worker restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crm_meetings.store import upgrade
from crm_meetings.sync.schedule import (
    NIGHTLY_JOB_ID,
    build_scheduler,
    schedule_nightly,
    stop_scheduler,
)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("crm-meetings")
    return subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_cli_reschedules_the_workers_job_in_the_shared_store(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = tmp_path / "crm-meetings.toml"
    config.write_text(f'[store]\nurl = "{sqlite_url}"\n', encoding="utf-8")
    upgrade(sqlite_url)
    worker = build_scheduler(sqlite_url, timezone="UTC")
    worker.start(paused=True)
    try:  # what a worker leaves in the job store
        schedule_nightly(
            worker, hour=2, minute=0, timezone="UTC", kwargs={"config_path": str(config)}
        )
    finally:
        stop_scheduler(worker)

    shown = run("--config", str(config), "sync", "schedule", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["hour"] == 2

    changed = run(
        "--config", str(config), "sync", "schedule",
        "--hour", "5", "--minute", "30", "--timezone", "Europe/Paris", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["next_run"].endswith("05:30:00+01:00")

    again = build_scheduler(sqlite_url, timezone="UTC")
    again.start(paused=True)
    try:
        job = again.get_job(NIGHTLY_JOB_ID)
        assert job is not None
        local = job.next_run_time.astimezone(job.trigger.timezone)
        assert (local.hour, local.minute) == (5, 30)
        assert job.kwargs == {"config_path": str(config)}, "the worker's arguments stay"
    finally:
        stop_scheduler(again)
    later = run("--config", str(config), "sync", "schedule", "--json", cwd=tmp_path)
    assert json.loads(later.stdout)["timezone"] == "Europe/Paris", "the choice is kept"


def test_a_bad_hour_is_a_usage_error(tmp_path: Path) -> None:
    result = run("sync", "schedule", "--hour", "24", cwd=tmp_path)
    assert result.returncode == 2
