"""One fixture per conferencing provider, so one suite runs over Zoom and GoTo Meeting.

Each :class:`Harness` is a started sandbox serving only that vendor's emulator over HTTPS,
seeded with meetings of that vendor, and a provider pointed at it with a tiny retry policy
whose waits are recorded instead of slept. A new provider = one ``build_*`` function here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from crm_meetings.conferencing import (
    AccountCredentials,
    ConferencingProvider,
    GoToProvider,
    HttpSettings,
    RefreshTokenGrant,
    ZoomProvider,
)
from crm_meetings.sandbox.goto import GoToEmulator
from crm_meetings.sandbox.seed import SeedData, SeedMeeting, SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory, sandbox_factory  # noqa: F401
from crm_meetings.sandbox.zoom import ZoomEmulator
from crm_meetings.transport import RetryPolicy

SEED = SeedSpec(seed=7, meetings=24, organizers=2, records=6, started_share=0.7, max_sessions=3)
POLICY = RetryPolicy(attempts=3, base=0.001, cap=0.002)
SEED_ORGANIZER = "rep0@sales.example.com"  # GoTo creates meetings for the token's organizer


@dataclass
class Harness:
    vendor: str
    sandbox: Sandbox
    provider: ConferencingProvider
    data: SeedData
    sleeps: list[float]
    history_endpoint: str  # the listing meetings_ran reads
    create_endpoint: str
    build: Callable[..., ConferencingProvider]  # (secret=None, page_size=...) -> provider
    stored: Callable[[str], Mapping[str, Any]]  # the emulator's view of a meeting
    providers: list[ConferencingProvider] = field(default_factory=list)

    @property
    def organizer(self) -> str:
        return self.data.users[0].email

    def pages(self, rows: int, page_size: int) -> int:
        """Listing calls for ``rows`` rows: Zoom pages them, GoTo answers them at once."""
        return max(1, math.ceil(rows / page_size)) if self.vendor == "zoom" else 1

    def seeded(self, predicate: Callable[[SeedMeeting], bool]) -> list[SeedMeeting]:
        return [m for m in self.data.meetings if predicate(m)]

    def ran_between(self, email: str, since: datetime, until: datetime) -> list[str]:
        """Provider ids of the organizer's seeded meetings with a session in the window."""
        key = next(u.key for u in self.data.users if u.email == email)
        rows = [
            (min(s.start for s in m.sessions if since <= s.start < until), m.provider_meeting_id)
            for m in self.data.meetings
            if m.organizer == key and any(since <= s.start < until for s in m.sessions)
        ]
        return [meeting_id for _, meeting_id in sorted(rows)]


def _settings(
    sandbox: Sandbox, vendor: str, sleeps: list[float], timeout: float = 10.0
) -> HttpSettings:
    return HttpSettings(
        api_url=sandbox.url(vendor),
        token_url=sandbox.url(vendor) + "/oauth/token",
        verify=sandbox.ssl_context(),
        timeout=timeout,
        retry=POLICY,
        sleep=sleeps.append,
    )


def build_zoom(
    sandbox: Sandbox,
    sleeps: list[float],
    secret: str | None = None,
    page_size: int = 300,
    *,
    timeout: float = 10.0,
) -> ZoomProvider:
    credentials = AccountCredentials(
        "sandbox-account", "sandbox-client", secret or sandbox.refresh_token("zoom")
    )
    settings = _settings(sandbox, "zoom", sleeps, timeout)
    return ZoomProvider(credentials, settings, page_size=page_size)


def build_goto(
    sandbox: Sandbox,
    sleeps: list[float],
    secret: str | None = None,
    page_size: int = 0,
    *,
    timeout: float = 10.0,
) -> GoToProvider:
    """GoTo does not page: ``page_size`` is accepted and has nothing to change."""
    refresh = secret or sandbox.refresh_token("goto", subject=SEED_ORGANIZER)
    grant = RefreshTokenGrant("sandbox-client", "sandbox-secret", refresh)
    return GoToProvider(grant, _settings(sandbox, "goto", sleeps, timeout))


def _zoom_stored(sandbox: Sandbox) -> Callable[[str], Mapping[str, Any]]:
    def stored(meeting_id: str) -> Mapping[str, Any]:
        row = sandbox.state("zoom")["meetings"][meeting_id]
        return {
            "subject": row["topic"],
            "start": row["start_time"],
            "organizer": row["host_email"],
            "deleted": row["deleted"],
            "notified": row["cancel_meeting_reminder"],
        }

    return stored


def _goto_stored(sandbox: Sandbox) -> Callable[[str], Mapping[str, Any]]:
    def stored(meeting_id: str) -> Mapping[str, Any]:
        row = sandbox.state("goto")["meetings"][meeting_id]
        return {
            "subject": row["subject"],
            "start": row["startTime"].replace(".000+00:00", "Z"),
            "organizer": row["organizerEmail"],
            "deleted": row["deleted"],
            "notified": False,  # GoTo sends no cancellation of its own
        }

    return stored


@pytest.fixture(params=["zoom", "goto"])
def harness(request: pytest.FixtureRequest, sandbox_factory: SandboxFactory) -> Iterator[Harness]:  # noqa: F811
    vendor: str = request.param
    emulator = ZoomEmulator() if vendor == "zoom" else GoToEmulator()
    sandbox = sandbox_factory([emulator], seed=dataclasses.replace(SEED, provider=vendor))
    assert sandbox.data is not None
    sleeps: list[float] = []
    build = build_zoom if vendor == "zoom" else build_goto
    provider = build(sandbox, sleeps)
    harness = Harness(
        vendor=vendor,
        sandbox=sandbox,
        provider=provider,
        data=sandbox.data,
        sleeps=sleeps,
        history_endpoint=(
            "/v2/report/users/{userId}/meetings"
            if vendor == "zoom"
            else "/G2M/rest/v2/organizers/{organizerKey}/historicalMeetings"
        ),
        create_endpoint=(
            "/v2/users/{userId}/meetings" if vendor == "zoom" else "/G2M/rest/v2/meetings"
        ),
        build=lambda secret=None, page_size=300, timeout=10.0: build(
            sandbox, sleeps, secret, page_size, timeout=timeout
        ),
        stored=_zoom_stored(sandbox) if vendor == "zoom" else _goto_stored(sandbox),
    )
    harness.providers.append(provider)
    try:
        yield harness
    finally:
        for opened in harness.providers:
            opened.close()
