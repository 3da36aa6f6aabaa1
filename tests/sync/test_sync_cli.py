"""``crm-meetings sync`` and ``sync runs``, run as ``python -m crm_meetings.commands.sync``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.sandbox.testing import load_module

MODULE = "crm_meetings.commands.sync"


W = load_module(Path(__file__).with_name("test_jobs_world.py"))


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    yield from W.make_world(tmp_path, sqlite_url)


def test_a_never_started_meeting_answers_no_session_exists(world: Any) -> None:
    idle = world.idle_meeting()
    result = world.run_module(MODULE, "--meeting", idle.id)
    assert result.returncode == 1, result.stderr
    assert f"No session exists for meeting {idle.id}" in result.stderr
    assert "Traceback" not in result.stderr


def test_dry_run_shows_the_diff_and_writes_nothing(world: Any) -> None:
    result = world.run_module(MODULE, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)["planned"]
    assert len(planned) == world.expected_sessions()
    assert {row["crm"] for row in planned} == {"hubspot"}
    assert world.crm_sessions() == []

    human = world.run_module(MODULE, "--dry-run")
    assert human.returncode == 0, human.stderr
    assert f"Would write {world.expected_sessions()} session(s)" in human.stdout
    assert world.crm_sessions() == []
    listed = world.run_module(MODULE, "runs", "--json")
    assert json.loads(listed.stdout) == [], "a dry run records no run"


def test_sync_then_runs_lists_the_run(world: Any) -> None:
    result = world.run_module(MODULE, "--organizer", W.ORGANIZER)
    assert result.returncode == 0, result.stderr
    assert f"Synced 1 organizer(s): {world.expected_sessions()} session(s)" in result.stdout, (
        result.stdout
    )
    assert "0 with errors" in result.stdout
    assert len(world.crm_sessions()) == world.expected_sessions()

    listed = world.run_module(MODULE, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["kind"], r["status"], r["organizer"]) for r in runs] == [
        ("manual", "succeeded", W.ORGANIZER)
    ]
    assert runs[0]["counters"]["sessions_written"] == world.expected_sessions()
    table = world.run_module(MODULE, "runs")
    assert "Recent sync runs" in table.stdout


def test_since_rereads_without_moving_the_checkpoint(world: Any) -> None:
    assert world.run_module(MODULE).returncode == 0
    with world.store() as store, store.transaction() as uow:
        before = uow.checkpoints.get("default", "zoom", f"sessions:{W.ORGANIZER}")
    assert before is not None
    since = min(m.start for m in world.meetings).date().isoformat()
    result = world.run_module(MODULE, "--since", since, "--json")
    assert result.returncode == 0, result.stderr
    [outcome] = json.loads(result.stdout)["outcomes"]
    assert outcome["counters"]["meetings_seen"] > 0
    assert outcome["counters"]["sessions_written"] == 0
    with world.store() as store, store.transaction() as uow:
        after = uow.checkpoints.get("default", "zoom", f"sessions:{W.ORGANIZER}")
    assert after == before
    bad = world.run_module(MODULE, "--since", "last tuesday")
    assert bad.returncode == 1
    assert "is not a date" in bad.stderr
