"""The nightly job and one organizer's job, from a real settings file, against the sandbox."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.model import Person
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import SyncRunStatus
from crm_meetings.sync.jobs import run_nightly, run_organizer

W = load_module(Path(__file__).with_name("test_jobs_world.py"))


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    yield from W.make_world(tmp_path, sqlite_url)


def test_the_nightly_job_writes_history_and_a_second_fire_does_nothing(world: Any) -> None:
    report = run_nightly(str(world.config), env={})
    assert report.claimed
    assert [(o.provider, o.organizer) for o in report.outcomes] == [("zoom", W.ORGANIZER)]
    outcome = report.outcomes[0]
    assert outcome.ok, outcome.error or outcome.report
    assert outcome.report.counters.sessions_written == world.expected_sessions() > 0
    assert len(world.crm_sessions()) == world.expected_sessions()

    again = run_nightly(str(world.config), env={})
    assert not again.claimed
    assert again.outcomes == ()
    assert "claimed by another worker" in (again.skipped or "")
    with world.store() as store, store.transaction() as uow:
        runs = uow.runs.list_recent()
    assert [(r.kind, r.status) for r in runs] == [("nightly", SyncRunStatus.SUCCEEDED)]


def test_one_organizer_failing_does_not_stop_the_others(world: Any) -> None:
    stray = dataclasses.replace(
        world.meetings[0],
        id="job-stray",
        uid="job-stray@crm-meetings",
        crm_record_id="stray-record",
        organizer=Person("nobody@elsewhere.example", "Nobody"),
        start=world.meetings[0].start + timedelta(days=1),
        end=world.meetings[0].end + timedelta(days=1),
    )
    with world.store() as store, store.transaction() as uow:
        uow.meetings.add(stray)
    report = run_nightly(str(world.config), env={})
    by_organizer = {o.organizer: o for o in report.outcomes}
    assert list(by_organizer) == ["nobody@elsewhere.example", W.ORGANIZER]
    assert by_organizer["nobody@elsewhere.example"].error
    assert not by_organizer["nobody@elsewhere.example"].ok
    assert by_organizer[W.ORGANIZER].ok
    assert len(world.crm_sessions()) == world.expected_sessions()


def test_run_organizer_is_one_organizers_sync(world: Any) -> None:
    outcome = run_organizer(str(world.config), "default", "zoom", W.ORGANIZER, env={})
    assert outcome.ok
    assert outcome.to_json()["counters"]["sessions_written"] == world.expected_sessions()
    second = run_organizer(str(world.config), "default", "zoom", W.ORGANIZER, env={})
    assert second.to_json()["counters"]["sessions_written"] == 0


NIGHTLY_SCRIPT = """
import json, sys
from crm_meetings.sync.jobs import run_nightly
print(json.dumps(run_nightly(sys.argv[1]).to_json()))
"""


@pytest.mark.postgres
def test_two_worker_processes_on_one_postgres_run_the_night_once(
    tmp_path: Path, postgres_url: str
) -> None:
    for world in W.make_world(tmp_path, postgres_url):
        command = [sys.executable, "-c", NIGHTLY_SCRIPT, str(world.config)]
        processes = [
            subprocess.Popen(
                command, env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = []
        for process in processes:
            out, err = process.communicate(timeout=90)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        assert sorted(r["claimed"] for r in results) == [False, True]
        with world.store() as store, store.transaction() as uow:
            runs = uow.runs.list_recent()
        assert len(runs) == 1, runs
        assert runs[0].status is SyncRunStatus.SUCCEEDED
        assert len(world.crm_sessions()) == world.expected_sessions()
