"""The replay guard lives in the store: every process on one database accepts a signed
request once (SQLite and PostgreSQL), even when several race on the same signature."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient  # imported by conftest first, without warning

from crm_meetings.config import Settings
from crm_meetings.errors import UnauthenticatedError
from crm_meetings.store import Store, upgrade
from crm_meetings.web.app import create_app
from crm_meetings.web.replay import StoredReplayGuard
from crm_meetings.web.services import WebServices
from crm_meetings.web.tables import UsedSignatureRow

if TYPE_CHECKING:
    from conftest import Clock, Crm  # tests/web/conftest.py


@pytest.fixture
def stores(store_url: str, clock: Clock) -> Iterator[tuple[Store, Store]]:
    """Two stores (two engines, as two processes have) on one migrated database."""
    upgrade(store_url)
    with Store(store_url, clock=clock) as first, Store(store_url, clock=clock) as second:
        yield first, second


def _client(store: Store, clock: Clock, settings: Settings) -> TestClient:
    app = create_app(settings, store=store, clock=clock, services=WebServices())
    return TestClient(app, base_url="https://testserver")


def test_two_apps_on_one_store_accept_a_signed_request_once(
    stores: tuple[Store, Store], clock: Clock, crm: Crm, settings: Settings
) -> None:
    signed = {"signed_request": crm.canvas()}
    token = {"X-Zoho-Widget-Token": crm.zoho()}
    uri = "https://testserver/api/v1/me?portalId=62515&userId=7&userEmail=olivia@acme.example"
    hubspot = crm.hubspot("GET", uri)
    with (
        _client(stores[0], clock, settings) as one,
        _client(stores[1], clock, settings) as two,
    ):
        assert one.post("/salesforce/canvas", data=signed, follow_redirects=False).is_redirect
        assert one.get("/api/v1/me", headers=token).status_code == 200
        assert one.get(uri, headers=hubspot).status_code == 200
        for again in (
            two.post("/salesforce/canvas", data=signed, follow_redirects=False),
            two.get("/api/v1/me", headers=token),
            two.get(uri, headers=hubspot),
        ):
            assert again.status_code == 401, again.text
            assert "already used" in again.json()["message"]


def test_processes_racing_on_one_signature_accept_it_exactly_once(
    store_url: str, clock: Clock
) -> None:
    upgrade(store_url)
    racers = 6
    opened = [Store(store_url, clock=clock) for _ in range(racers)]
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def race(store: Store) -> None:
        start.wait()
        try:
            StoredReplayGuard(store).check("the-same-signature", clock())
        except UnauthenticatedError:
            outcomes.append("refused")
        else:
            outcomes.append("accepted")

    threads = [threading.Thread(target=race, args=(store,)) for store in opened]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for store in opened:
            store.dispose()
    assert sorted(outcomes) == ["accepted"] + ["refused"] * (racers - 1)


def test_a_signature_is_kept_until_it_goes_stale_then_purged(
    stores: tuple[Store, Store], clock: Clock
) -> None:
    store, other = stores
    guard, elsewhere = StoredReplayGuard(store), StoredReplayGuard(other)
    guard.check("canvas-signature", clock(), until=clock() + timedelta(minutes=15))
    clock.advance(minutes=10)  # past the 5-minute window, before its own expiry
    with pytest.raises(UnauthenticatedError, match="already used"):
        elsewhere.check("canvas-signature", clock())
    clock.advance(minutes=6)
    elsewhere.check("another-signature", clock())  # purges the expired row
    with store.transaction() as uow:
        kept = uow.session.scalars(sa.select(UsedSignatureRow.expires_at)).all()
    assert kept == [clock() + timedelta(minutes=5)]
