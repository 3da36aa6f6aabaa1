"""Run claims and leases: exactly-once nightly runs across workers, one sync per organizer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from crm_meetings.store import Store, upgrade
from crm_meetings.sync.claims import ClaimRepository, LeaseRepository
from crm_meetings.sync.schedule import NIGHTLY_JOB_ID


def test_a_run_is_claimed_once(store_url: str) -> None:
    upgrade(store_url)
    with Store(store_url) as store:
        with store.transaction() as uow:
            assert uow.repository(ClaimRepository).claim(NIGHTLY_JOB_ID, "2026-11-23", "w1")
        with store.transaction() as uow:
            claims = uow.repository(ClaimRepository)
            assert not claims.claim(NIGHTLY_JOB_ID, "2026-11-23", "w2")
            assert claims.claim(NIGHTLY_JOB_ID, "2026-11-24", "w2")
            assert claims.holder(NIGHTLY_JOB_ID, "2026-11-23") == "w1"


def test_leases_exclude_until_released_or_expired(store_url: str) -> None:
    upgrade(store_url)
    now = [datetime(2026, 11, 23, 9, 0, tzinfo=UTC)]
    with Store(store_url, clock=lambda: now[0]) as store:
        name, ttl = "sync:default:rep@x.com", timedelta(minutes=10)
        with store.transaction() as uow:
            leases = uow.repository(LeaseRepository)
            assert leases.acquire(name, "nightly", ttl)
            assert leases.acquire(name, "nightly", ttl)  # renewing is fine
        with store.transaction() as uow:
            assert not uow.repository(LeaseRepository).acquire(name, "manual", ttl)
        now[0] += timedelta(minutes=11)
        with store.transaction() as uow:
            leases = uow.repository(LeaseRepository)
            assert leases.holder(name) is None
            assert leases.acquire(name, "manual", ttl)
            leases.release(name, "manual")
            assert leases.holder(name) is None


@pytest.mark.postgres
def test_two_workers_racing_on_postgres_claim_once(postgres_url: str) -> None:
    upgrade(postgres_url)
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        with Store(postgres_url) as store:
            barrier.wait()
            with store.transaction() as uow:
                if uow.repository(ClaimRepository).claim(NIGHTLY_JOB_ID, "2026-11-23", name):
                    winners.append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1
