"""The pages in real Chromium (Debian's, driven by Playwright), over a real uvicorn server.

The panel is opened the way Salesforce opens it: a form POST of a signed Canvas request.
The rep's flow (schedule, edit, copy, download, cancel) runs on the real stack — a seeded
Salesforce Account in the sandbox, Zoom, and an SMTP sink — and is checked there.
Screenshots of each step go to ``$CRM_MEETINGS_ARTIFACTS/<test>`` (else the test's
tmp_path). Without /usr/bin/chromium these tests skip — with ``CI=true`` they fail.
"""

from __future__ import annotations

import html
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import uvicorn
from apscheduler.schedulers.base import BaseScheduler

from crm_meetings.model import CrmKind, Meeting, Participant, Session
from crm_meetings.store import Store, upgrade
from crm_meetings.sync.schedule import build_scheduler, stop_scheduler
from crm_meetings.web.app import create_app
from crm_meetings.web.services import WebServices

if TYPE_CHECKING:
    from conftest import Clock, Crm, MeetingFactory, Stack

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ORG = "00Dxx0000001gEREAY"
ADMIN = "admin@acme.example"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Debian chromium (skips without it; fails under CI=true)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    base = os.environ.get("CRM_MEETINGS_ARTIFACTS")
    folder = Path(base) / request.node.name if base else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class LiveServer:
    """uvicorn on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@pytest.fixture
def scheduler(sqlite_url: str) -> Iterator[BaseScheduler]:
    upgrade(sqlite_url)
    built = build_scheduler(sqlite_url, timezone="UTC")
    built.start(paused=True)
    try:
        yield built
    finally:
        stop_scheduler(built)


def serve(
    sqlite_url: str, clock: Clock, settings: Any, services: Callable[[Store], WebServices]
) -> Iterator[tuple[LiveServer, Store]]:
    """The app over uvicorn on a store of its own, with ``services(store)``."""
    with Store(sqlite_url, clock=clock) as store:
        app = create_app(settings, store=store, clock=clock, services=services(store))
        with LiveServer(app) as server:
            yield server, store


@pytest.fixture
def live(
    sqlite_url: str, clock: Clock, settings: Any, scheduler: BaseScheduler
) -> Iterator[tuple[LiveServer, Store]]:
    """The pages over stored meetings; the admin's saves reschedule ``scheduler``."""
    yield from serve(
        sqlite_url,
        clock,
        settings,
        lambda store: WebServices(
            scheduler=scheduler, admins=frozenset({ADMIN}), nightly_func="time:time"
        ),
    )


@pytest.fixture
def live_stack(
    sqlite_url: str, clock: Clock, settings: Any, stack: Stack
) -> Iterator[tuple[LiveServer, Store]]:
    """The app on the real stack: actions reach the Salesforce and Zoom emulators."""
    upgrade(sqlite_url)
    yield from serve(sqlite_url, clock, settings, lambda store: stack.services(store, clock))


def open_by_canvas(page: Any, base_url: str, signed_request: str, target: str = "panel") -> None:
    """What Salesforce does: POST the signed request to the Canvas URL."""
    page.set_content(
        f'<form method="post" action="{base_url}/salesforce/canvas?page={target}">'
        f'<input type="hidden" name="signed_request" value="{html.escape(signed_request)}">'
        "</form>"
    )
    with page.expect_navigation():
        page.evaluate("document.forms[0].submit()")
    assert page.url == f"{base_url}/{target}", page.url


def unlabelled_fields(page: Any) -> list[str]:
    return list(
        page.evaluate(
            """() => Array.from(document.querySelectorAll('input, select, textarea'))
                .filter((el) => el.type !== 'hidden' && el.labels.length === 0
                                && !el.closest('label'))
                .map((el) => el.outerHTML)"""
        )
    )


def test_panel_shows_meetings_copies_downloads_and_syncs(
    chromium: Any,
    live: tuple[LiveServer, Store],
    crm: Crm,
    clock: Clock,
    make_meeting: MeetingFactory,
    artifacts: Path,
) -> None:
    server, store = live
    upcoming = make_meeting(subject="Quarterly review <Acme>")
    ran = make_meeting(
        subject="Kick-off",
        start=clock() - timedelta(days=3),
        end=clock() - timedelta(days=3, hours=-1),
    )
    never = make_meeting(
        subject="Demo nobody joined",
        start=clock() - timedelta(days=1),
        end=clock() - timedelta(days=1, hours=-1),
    )
    with store.transaction() as uow:
        for meeting in (upcoming, ran, never):
            uow.meetings.add(meeting, org_id=ORG)
        uow.sessions.upsert_many(
            [
                Session(
                    "zoom",
                    "sess-1",
                    ran.provider_meeting_id or "p",
                    ran.start,
                    ran.start + timedelta(minutes=55),
                    participants=(
                        Participant(
                            "Zed Client",
                            ran.start,
                            ran.start + timedelta(minutes=40),
                            "zed@client.example",
                        ),
                    ),
                )
            ],
            ran.id,
        )
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    try:
        open_by_canvas(page, server.url, crm.canvas())
        page.screenshot(path=artifacts / "01-panel-desktop.png", full_page=True)
        upcoming_card = page.locator(f'[data-meeting="{upcoming.id}"]')
        assert upcoming_card.locator("h3").inner_text() == "Quarterly review <Acme>"
        ran_card = page.locator(f'[data-meeting="{ran.id}"]')
        assert "Zed Client" in ran_card.locator("table").inner_text()
        assert "40" in ran_card.locator("tbody td").nth(4).inner_text()
        never_card = page.locator(f'[data-meeting="{never.id}"]')
        assert never_card.locator(".no-session").inner_text() == "No session exists"
        assert unlabelled_fields(page) == []

        upcoming_card.get_by_role("button", name="Copy invitation").click()
        page.get_by_role("status").filter(has_text="copied").wait_for()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith("Quarterly review <Acme>")
        assert upcoming.join_url
        assert upcoming.join_url in copied
        page.screenshot(path=artifacts / "02-copied.png")

        with page.expect_download() as download_info:
            upcoming_card.get_by_role("link", name="Add to Outlook").click()
        download = download_info.value
        saved = artifacts / download.suggested_filename
        download.save_as(saved)
        event = icalendar.Calendar.from_ical(saved.read_bytes()).walk("VEVENT")[0]
        assert str(event["UID"]) == upcoming.uid
        assert str(event["SUMMARY"]) == "Quarterly review <Acme>"

        never_card.get_by_role("button", name="Sync history").click()
        page.get_by_role("status").filter(has_text="No session exists").wait_for()
        page.screenshot(path=artifacts / "03-no-session.png")
        ran_card.get_by_role("button", name="Sync history").click()
        page.get_by_role("status").filter(has_text="1 session").wait_for()

        upcoming_card.get_by_role("button", name="Edit").click()
        assert upcoming_card.get_by_label("Subject").is_visible()
        assert (
            upcoming_card.get_by_role("button", name="Edit").get_attribute("aria-expanded")
            == "true"
        )

        page.set_viewport_size({"width": 360, "height": 740})
        page.screenshot(path=artifacts / "04-panel-360px.png", full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 360, f"the panel is {overflow}px wide at 360px"
    finally:
        context.close()


def test_admin_changes_the_sync_hour_and_sees_the_next_run_change(
    chromium: Any, live: tuple[LiveServer, Store], crm: Crm, artifacts: Path
) -> None:
    server, _ = live
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        open_by_canvas(page, server.url, crm.canvas(email=ADMIN, record=None), "admin")
        page.screenshot(path=artifacts / "01-admin.png", full_page=True)
        next_run = page.locator("#next-run")
        before = next_run.get_attribute("datetime")
        assert before
        assert unlabelled_fields(page) == []

        page.get_by_label("Hour (0–23)").fill("5")
        page.get_by_label("Minute").fill("45")
        page.get_by_label("Timezone").fill("Europe/Paris")
        page.get_by_role("button", name="Save sync time").click()
        page.get_by_role("status").filter(has_text="rescheduled").wait_for()
        after = next_run.get_attribute("datetime")
        assert after
        assert after != before
        local = datetime.fromisoformat(after).astimezone(ZoneInfo("Europe/Paris"))
        assert (local.hour, local.minute) == (5, 45)
        page.screenshot(path=artifacts / "02-admin-rescheduled.png", full_page=True)

        page.reload()
        assert page.get_by_label("Hour (0–23)").input_value() == "5"
        assert page.locator("#next-run").get_attribute("datetime") == after

        page.get_by_label("Hour (0–23)").fill("24")
        page.get_by_role("button", name="Save sync time").click()
        assert page.get_by_label("Hour (0–23)").evaluate("el => !el.validity.valid")
    finally:
        context.close()


def test_schedule_edit_copy_download_and_cancel_on_the_sandboxed_salesforce_account(
    chromium: Any,
    live_stack: tuple[LiveServer, Store],
    stack: Stack,
    crm: Crm,
    clock: Clock,
    artifacts: Path,
) -> None:
    """The rep's whole flow, from a Canvas POST on a seeded Account to the mail sent."""
    server, store = live_stack
    invitee = "zed@client.example"
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    try:
        open_by_canvas(page, server.url, crm.canvas(email=stack.organizer, record=stack.account))
        form = page.locator('[data-form="schedule"]')
        form.get_by_label("Subject").fill("Pricing call")
        form.get_by_label("Start").fill("2026-03-10T10:00")
        form.get_by_label("End").fill("2026-03-10T11:00")
        form.get_by_label("Timezone").fill("Europe/Paris")
        form.get_by_label("Record type").select_option(label="Internal Meeting")
        form.get_by_label("Other invitees (e-mail addresses, comma-separated)").fill(invitee)
        page.screenshot(path=artifacts / "01-schedule-form.png", full_page=True)
        with page.expect_navigation():
            form.get_by_role("button", name="Schedule").click()
        card = page.locator("article.upcoming").filter(has_text="Pricing call")
        assert "Tue 10 Mar 2026, 10:00–11:00 (Europe/Paris)" in card.inner_text()
        meeting_id = card.get_attribute("data-meeting")
        assert meeting_id
        page.screenshot(path=artifacts / "02-scheduled.png", full_page=True)
        scheduled = _stored(store, meeting_id)
        assert scheduled.crm_record_id
        assert scheduled.provider_meeting_id
        event = stack.event(scheduled.crm_record_id)
        assert (event["Subject"], event["WhatId"]) == ("Pricing call", stack.account.record_id)
        assert event["StartDateTime"].startswith("2026-03-10T09:00:00")
        record_types = {
            t.name: t.id for t in stack.clients.connector(CrmKind.SALESFORCE).record_types()
        }
        assert event["RecordTypeId"] == record_types["Internal Meeting"]

        card.get_by_role("button", name="Edit").click()
        card.get_by_label("Subject").fill("Pricing call (moved)")
        card.get_by_label("Start (Europe/Paris)").fill("2026-03-10T14:00")
        card.get_by_label("End (Europe/Paris)").fill("2026-03-10T15:00")
        with page.expect_navigation():
            card.get_by_role("button", name="Save and send update").click()
        card = page.locator("article.upcoming").filter(has_text="Pricing call (moved)")
        assert "14:00–15:00" in card.inner_text()
        page.screenshot(path=artifacts / "03-edited.png", full_page=True)
        event = stack.event(scheduled.crm_record_id)
        assert event["Subject"] == "Pricing call (moved)"
        assert event["StartDateTime"].startswith("2026-03-10T13:00:00")
        assert event["Meeting_Sequence__c"] == 1
        zoom = stack.sandbox.state("zoom")["meetings"][scheduled.provider_meeting_id]
        assert zoom["topic"] == "Pricing call (moved)"

        card.get_by_role("button", name="Copy invitation").click()
        page.get_by_role("status").filter(has_text="copied").wait_for()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith("Pricing call (moved)")
        assert zoom["join_url"] in copied, "the invitation carries the Zoom join URL"

        with page.expect_download() as download_info:
            card.get_by_role("link", name="Add to Outlook").click()
        saved = artifacts / download_info.value.suggested_filename
        download_info.value.save_as(saved)
        vevent = icalendar.Calendar.from_ical(saved.read_bytes()).walk("VEVENT")[0]
        assert str(vevent["UID"]) == scheduled.uid
        assert int(vevent["SEQUENCE"]) == 1
        assert str(vevent["SUMMARY"]) == "Pricing call (moved)"
        assert vevent.decoded("DTSTART").astimezone(UTC) == datetime(2026, 3, 10, 13, tzinfo=UTC)

        dialogs: list[str] = []

        def answer(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.once("dialog", answer)
        with page.expect_navigation():
            card.get_by_role("button", name="Cancel meeting").click()
        assert dialogs == ['Cancel "Pricing call (moved)"? Every invitee is told.']
        cancelled = page.locator("article.cancelled").filter(has_text="Pricing call (moved)")
        assert cancelled.count() == 1
        page.screenshot(path=artifacts / "04-cancelled.png", full_page=True)
    finally:
        context.close()

    event = stack.event(scheduled.crm_record_id)
    assert (event["Meeting_Status__c"], event["Meeting_Sequence__c"]) == ("cancelled", 2)
    assert event["Meeting_UID__c"] == scheduled.uid
    assert stack.sandbox.state("zoom")["meetings"][scheduled.provider_meeting_id]["deleted"]
    stack.deliver(store, clock())
    assert stack.mail.itip() == [
        ("REQUEST", 0, invitee),
        ("REQUEST", 1, invitee),
        ("CANCEL", 2, invitee),
    ]


def _stored(store: Store, meeting_id: str) -> Meeting:
    with store.transaction() as uow:
        return uow.meetings.get(meeting_id)
