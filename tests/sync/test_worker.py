"""``crm-meetings worker`` as a real process: schedules the nightly job, stops on SIGTERM."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from crm_meetings.store import create_engine
from crm_meetings.sync.schedule import JOBS_TABLE, NIGHTLY_JOB_ID

MODULE = "crm_meetings.commands.worker"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sync_worker_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


W = _load(Path(__file__).with_name("test_jobs_world.py"))


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    yield from W.make_world(tmp_path, sqlite_url, extra="hour = 3\nminute = 45")


def _nightly_next_run(store_url: str) -> float | None:
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            jobs = sa.table(JOBS_TABLE, sa.column("id"), sa.column("next_run_time"))
            return connection.scalar(  # type: ignore[no-any-return]
                sa.select(jobs.c.next_run_time).where(jobs.c.id == NIGHTLY_JOB_ID)
            )
    except sa.exc.OperationalError:
        return None  # the table does not exist yet
    finally:
        engine.dispose()


def _start(world: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, "--outbox-interval", "0.2", *args],
        env=world.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_worker_schedules_the_nightly_job_and_stops_on_sigterm(world: Any) -> None:
    process = _start(world)
    try:
        deadline = time.monotonic() + 30
        next_run = None
        while next_run is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            next_run = _nightly_next_run(world.store_url)
        assert next_run is not None, process.stderr.read() if process.stderr else ""
        fires = datetime.fromtimestamp(next_run, ZoneInfo("Europe/Paris"))
        assert (fires.hour, fires.minute) == (3, 45)
        time.sleep(0.5)  # a few outbox rounds
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "worker stopped" in err
    assert "Traceback" not in err
    assert "SIGTERM" in err


def test_the_worker_refuses_an_unmigrated_database(world: Any, tmp_path: Path) -> None:
    text = world.config.read_text(encoding="utf-8")
    fresh = f"sqlite+pysqlite:///{tmp_path / 'empty.db'}"
    world.config.write_text(text.replace(world.store_url, fresh), encoding="utf-8")
    process = _start(world)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "crm-meetings db upgrade" in err
