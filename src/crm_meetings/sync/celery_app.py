"""Celery fan-out of the nightly history sync: one task per (provider, organizer), on Redis.

``crm-meetings worker --queue celery`` keeps the scheduler; when the nightly job fires it
claims the night as usual and then only enqueues. Celery workers run the tasks::

    celery -A crm_meetings.sync.celery_app worker --pool=solo

Each task is :func:`crm_meetings.sync.jobs.run_organizer`: the same engine, checkpoints and
per-organizer lease as the inline run. A task that finds its organizer's lease taken (a
manual sync is running) retries later.

Broker (and result backend): ``CRM_MEETINGS_CELERY_BROKER``, default
``redis://127.0.0.1:6379/0``; queue: ``CRM_MEETINGS_CELERY_QUEUE``, default
``crm-meetings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from celery import Celery, Task

from crm_meetings.errors import ConflictError

__all__ = [
    "BROKER_ENV",
    "DEFAULT_BROKER",
    "DEFAULT_QUEUE",
    "QUEUE_ENV",
    "TASK_NAME",
    "app",
    "create_app",
    "enqueue_organizers",
    "sync_organizer_task",
]

BROKER_ENV: Final = "CRM_MEETINGS_CELERY_BROKER"
QUEUE_ENV: Final = "CRM_MEETINGS_CELERY_QUEUE"
DEFAULT_BROKER: Final = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE: Final = "crm-meetings"
TASK_NAME: Final = "crm_meetings.sync.organizer"
LEASE_RETRY_SECONDS: Final = 60


def create_app(env: Mapping[str, str] | None = None) -> Celery:
    """A Celery app on the configured broker, routing every task to the configured queue."""
    env = os.environ if env is None else env
    broker = env.get(BROKER_ENV) or DEFAULT_BROKER
    queue = env.get(QUEUE_ENV) or DEFAULT_QUEUE
    celery = Celery("crm_meetings", broker=broker, backend=broker)
    celery.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,  # a worker killed mid-task leaves it for another
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return celery


app: Celery = create_app()


@app.task(name=TASK_NAME, bind=True, max_retries=30)  # type: ignore[untyped-decorator]
def sync_organizer_task(
    self: Task, config_path: str | None, org_id: str, provider: str, organizer: str
) -> dict[str, Any]:
    """Run one organizer's history sync; a taken lease means "later", not "failed"."""
    from crm_meetings.sync.jobs import run_organizer

    try:
        outcome = run_organizer(config_path, org_id, provider, organizer)
    except ConflictError as error:
        raise self.retry(exc=error, countdown=LEASE_RETRY_SECONDS) from None
    return outcome.to_json()


def enqueue_organizers(
    config_path: str | None, org_id: str, targets: Sequence[tuple[str, str]]
) -> list[str]:
    """One task per (provider, organizer); returns the task ids."""
    return [
        sync_organizer_task.apply_async(args=(config_path, org_id, provider, organizer)).id
        for provider, organizer in targets
    ]
