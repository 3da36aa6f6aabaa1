"""The nightly job: DST-correct trigger, persistence, misfire + coalesce, claims, leases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler

from crm_meetings.errors import ValidationError
from crm_meetings.store import create_engine
from crm_meetings.sync.schedule import (
    JOBS_TABLE,
    NIGHTLY_JOB_ID,
    build_scheduler,
    nightly_run_key,
    nightly_trigger,
    schedule_nightly,
    stop_scheduler,
)

FIRED: list[datetime] = []
FIRED_EVENT = threading.Event()


def record_fire() -> None:
    """The job the scheduler tests run (referenced by name, as a persisted job must be)."""
    FIRED.append(datetime.now(UTC))
    FIRED_EVENT.set()


def test_trigger_follows_local_time_across_dst() -> None:
    trigger = nightly_trigger(9, 0, "Europe/Paris")
    before = trigger.get_next_fire_time(None, datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    after = trigger.get_next_fire_time(None, datetime(2026, 3, 29, 12, 0, tzinfo=UTC))
    assert before is not None
    assert after is not None
    assert before.astimezone(UTC) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)  # CET, UTC+1
    assert after.astimezone(UTC) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # CEST, UTC+2
    assert (before.hour, after.hour) == (9, 9)


def test_trigger_on_a_skipped_hour_still_runs_that_day() -> None:
    trigger = nightly_trigger(2, 30, "Europe/Paris")  # 02:30 does not exist on 2026-03-29
    fire = trigger.get_next_fire_time(None, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert fire is not None
    assert fire.astimezone(UTC).date() in {datetime(2026, 3, 29).date()}


@pytest.mark.parametrize(
    ("hour", "minute", "field"), [(24, 0, "sync.hour"), (3, 60, "sync.minute")]
)
def test_bad_hour_or_minute_is_refused(hour: int, minute: int, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        nightly_trigger(hour, minute, "UTC")
    assert info.value.field == field


def test_run_key_is_the_local_date() -> None:
    fired = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert nightly_run_key(fired, "Asia/Tokyo") == "2026-11-24"
    assert nightly_run_key(fired, "America/New_York") == "2026-11-23"


def _job_ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            table = sa.Table(JOBS_TABLE, sa.MetaData(), autoload_with=connection)
            return list(connection.scalars(sa.select(table.c.id)))
    finally:
        engine.dispose()


def test_job_persists_and_rescheduling_changes_the_next_run(store_url: str) -> None:
    scheduler = build_scheduler(store_url, timezone="Europe/Paris")
    scheduler.start(paused=True)
    try:
        job = schedule_nightly(scheduler, hour=2, minute=0, timezone="Europe/Paris", func=_ref())
        first = job.next_run_time
        job = schedule_nightly(scheduler, hour=5, minute=15, timezone="Europe/Paris", func=_ref())
        assert job.next_run_time != first
        assert (job.next_run_time.hour, job.next_run_time.minute) == (5, 15)
    finally:
        stop_scheduler(scheduler)
    assert _job_ids(store_url) == [NIGHTLY_JOB_ID]
    again = build_scheduler(store_url, timezone="Europe/Paris")
    again.start(paused=True)
    try:
        restored = again.get_job(NIGHTLY_JOB_ID)
        assert restored is not None
        assert (restored.next_run_time.hour, restored.next_run_time.minute) == (5, 15)
    finally:
        stop_scheduler(again)


def _ref() -> str:
    return f"{record_fire.__module__}:record_fire"


def test_missed_runs_are_coalesced_into_one(sqlite_url: str) -> None:
    FIRED.clear()
    FIRED_EVENT.clear()
    scheduler = build_scheduler(
        sqlite_url,
        timezone="UTC",
        misfire_grace_seconds=3 * 86400,
        scheduler_class=BackgroundScheduler,
    )
    scheduler.start(paused=True)
    try:
        job = schedule_nightly(scheduler, hour=3, minute=0, timezone="UTC", func=_ref())
        job.modify(next_run_time=datetime.now(UTC) - timedelta(days=3))  # down for 3 nights
        scheduler.resume()
        assert FIRED_EVENT.wait(10), "the missed run never ran"
        scheduler.wakeup()
        FIRED_EVENT.clear()
        assert not FIRED_EVENT.wait(1), "missed runs were not coalesced"
        assert len(FIRED) == 1
        refreshed = scheduler.get_job(NIGHTLY_JOB_ID)
        assert refreshed is not None
        assert refreshed.next_run_time > datetime.now(UTC)
    finally:
        stop_scheduler(scheduler)
