"""The Celery fan-out with a real ``celery worker`` process on the Redis at 127.0.0.1:6379.

Each test run uses a queue of its own, so parallel runs never take each other's tasks.
Without Redis the test skips, unless ``CI=true``: then it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import SyncRunStatus
from crm_meetings.sync.celery_app import BROKER_ENV, QUEUE_ENV, create_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


W = load_module(Path(__file__).with_name("test_jobs_world.py"))


@pytest.fixture(scope="module")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        message = f"Redis is not available to the tests at {REDIS_URL}: {error}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message} (CI=true: the Redis tests must run)", pytrace=False)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[Any]:
    yield from W.make_world(tmp_path, sqlite_url)


@pytest.fixture
def celery_env(world: Any, redis_url: str) -> Iterator[dict[str, str]]:
    queue = f"crm-meetings-test-{secrets.token_hex(4)}"
    env = world.env(**{BROKER_ENV: redis_url, QUEUE_ENV: queue})
    yield env
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(queue)
    finally:
        client.close()


@pytest.fixture
def celery_worker(celery_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = tmp_path / "celery.log"
    command = [
        *(sys.executable, "-m", "celery", "-A", "crm_meetings.sync.celery_app", "worker"),
        *("--pool=solo", "--without-heartbeat", "--without-mingle", "--without-gossip"),
        *("--loglevel=INFO", f"--logfile={log}", f"--hostname=test-{secrets.token_hex(4)}@%h"),
    ]
    process = subprocess.Popen(
        command, env=celery_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        process.terminate()  # Celery's warm shutdown
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


ENQUEUE = """
import json, sys
from crm_meetings.sync.jobs import run_nightly
print(json.dumps(run_nightly(sys.argv[1], queue="celery").to_json()))
"""


@pytest.mark.redis
def test_a_real_celery_worker_runs_the_nightly_fan_out(
    world: Any, celery_env: dict[str, str], celery_worker: subprocess.Popen[str]
) -> None:
    enqueued = subprocess.run(
        [sys.executable, "-c", ENQUEUE, str(world.config)],
        env=celery_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    nightly = json.loads(enqueued.stdout.strip().splitlines()[-1])
    assert nightly["claimed"]
    assert nightly["outcomes"] == []
    [task_id] = nightly["enqueued"]

    results = create_app(celery_env)
    try:
        first = results.AsyncResult(task_id).get(timeout=90)
        assert first["organizer"] == W.ORGANIZER
        assert first["status"] == "succeeded", first
        assert first["counters"]["sessions_written"] == world.expected_sessions()
        assert len(world.crm_sessions()) == world.expected_sessions()

        # the same organizer again, straight to the task: same checkpoint, nothing to write
        again = results.send_task(
            "crm_meetings.sync.organizer", args=(str(world.config), "default", "zoom", W.ORGANIZER)
        ).get(timeout=90)
        assert again["counters"]["sessions_written"] == 0
    finally:
        results.close()
    assert celery_worker.poll() is None, "the worker is still up"
    with world.store() as store, store.transaction() as uow:
        runs = uow.runs.list_recent()
    assert [(r.kind, r.status) for r in runs] == [("nightly", SyncRunStatus.SUCCEEDED)] * 2
