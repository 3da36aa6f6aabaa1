"""APScheduler 3 wiring for the nightly history sync.

One job with a stable id (:data:`NIGHTLY_JOB_ID`), a cron trigger at the admin's hour
and minute in their IANA timezone (DST-correct: 02:30 on a spring-forward night runs at
the first valid instant, per APScheduler's cron rules), kept in a SQLAlchemy job store in
the crm-meetings database. ``coalesce`` folds runs missed while the worker was down into
one; ``misfire_grace_time`` bounds how late that run may start; ``max_instances=1``.

Several workers may share the store; each fire is claimed in the database
(:class:`~crm_meetings.sync.claims.ClaimRepository`) with the local date as run key, so
the nightly sync runs once per day whichever worker fires first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from crm_meetings.errors import ValidationError
from crm_meetings.store.db import create_engine

__all__ = [
    "JOBS_TABLE",
    "NIGHTLY_JOB_ID",
    "build_scheduler",
    "nightly_run_key",
    "nightly_trigger",
    "schedule_nightly",
    "stop_scheduler",
]

NIGHTLY_JOB_ID: Final = "nightly-sync"
JOBS_TABLE: Final = "apscheduler_jobs"


def nightly_trigger(hour: int, minute: int, timezone: str) -> CronTrigger:
    """Every day at ``hour:minute`` local time in ``timezone``."""
    if not 0 <= hour <= 23:
        raise ValidationError("sync.hour", f"{hour} is not an hour of the day (0-23)")
    if not 0 <= minute <= 59:
        raise ValidationError("sync.minute", f"{minute} is not a minute (0-59)")
    return CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(timezone))


def nightly_run_key(fired_at: datetime, timezone: str) -> str:
    """The claim key of one nightly run: its local calendar date."""
    return fired_at.astimezone(ZoneInfo(timezone)).date().isoformat()


def build_scheduler(
    store_url: str,
    *,
    timezone: str,
    misfire_grace_seconds: int = 6 * 3600,
    scheduler_class: type[BaseScheduler] = BackgroundScheduler,
) -> BaseScheduler:
    """A scheduler (not started) whose jobs persist in the crm-meetings database."""
    engine = create_engine(store_url)
    return scheduler_class(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": misfire_grace_seconds,
        },
        timezone=ZoneInfo(timezone),
    )


def schedule_nightly(
    scheduler: BaseScheduler,
    *,
    hour: int,
    minute: int,
    timezone: str,
    func: str = "crm_meetings.sync.jobs:run_nightly",
    kwargs: dict[str, Any] | None = None,
) -> Job:
    """Add or replace the nightly job; changing the hour reschedules without a restart."""
    return scheduler.add_job(
        func,
        trigger=nightly_trigger(hour, minute, timezone),
        id=NIGHTLY_JOB_ID,
        name="Nightly history sync",
        replace_existing=True,
        kwargs=kwargs or {},
    )


def stop_scheduler(scheduler: BaseScheduler) -> None:
    """Shut down, wait for the scheduler thread, then close the job store's connections.

    APScheduler disposes the store's engine before its thread has ended, so a connection
    that thread still held would leak; disposing again afterwards closes it.
    """
    stores = list(scheduler._jobstores.values())
    scheduler.shutdown(wait=True)
    for store in stores:
        if isinstance(store, SQLAlchemyJobStore):
            store.engine.dispose()
