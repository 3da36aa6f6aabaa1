"""A world for the job, worker, CLI and Celery tests (no tests here; loaded by path).

A sandbox serving HubSpot and Zoom, a crm-meetings.toml pointing at it (with its CA), a
migrated store holding our copy of every seeded meeting, each created in the CRM: what
`schedule` leaves behind. Seeded meetings start ten days ago, so all their sessions lie
inside the first sync window.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crm_meetings.config import Settings, load_settings
from crm_meetings.connectors.registry import build_connector
from crm_meetings.demo.seeded import schedule_seeded as make_real
from crm_meetings.model import CrmKind, Meeting, Person
from crm_meetings.sandbox.seed import SeedData, SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.store import Store, upgrade

ORGANIZER = "rep0@sales.example.com"
CRM = "hubspot"
PROVIDER = "zoom"


def seed_spec(meetings: int = 6) -> SeedSpec:
    start = (datetime.now(UTC) - timedelta(days=10)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    return SeedSpec(
        seed=5,
        meetings=meetings,
        organizers=1,
        records=2,
        started_share=0.6,
        provider=PROVIDER,
        start=start,
    )


@dataclasses.dataclass
class World:
    sandbox: Sandbox
    data: SeedData
    config: Path
    store_url: str
    meetings: list[Meeting]

    def settings(self) -> Settings:
        return load_settings(self.config, env={})

    def store(self) -> Store:
        return Store(self.store_url)

    def crm_sessions(self) -> list[Any]:
        return list(self.sandbox.emulator(CRM).state()["sessions"])

    def expected_sessions(self) -> int:
        return sum(len(m.sessions) for m in self.data.meetings)

    def idle_meeting(self) -> Meeting:
        """Ours for a seeded meeting that never started."""
        return next(
            ours
            for seeded, ours in zip(self.data.meetings, self.meetings, strict=True)
            if not seeded.sessions
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a subprocess: this config, no stray CRM_MEETINGS_* values."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MEETINGS_")}
        env.update(CRM_MEETINGS_CONFIG=str(self.config), **extra)
        return env

    def run_module(self, module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )


def write_config(sandbox: Sandbox, path: Path, store_url: str, *, extra: str = "") -> Path:
    ca = sandbox.ca_path
    hubspot, zoom = sandbox.url("hubspot"), sandbox.url("zoom")
    path.write_text(
        f"""
[store]
url = "{store_url}"

[hubspot]
enabled = true
base_url = "{hubspot}"
client_id = "sandbox-client"
client_secret = "sandbox-secret"
refresh_token = "{sandbox.refresh_token("hubspot")}"
ca_bundle = "{ca}"

[zoom]
enabled = true
base_url = "{zoom}/v2"
token_url = "{zoom}/oauth/token"
account_id = "sandbox-account"
client_id = "sandbox-client"
client_secret = "{sandbox.refresh_token("zoom")}"
ca_bundle = "{ca}"

[sync]
timezone = "Europe/Paris"
{extra}
""",
        encoding="utf-8",
    )
    return path


def schedule_seeded(settings: Settings, data: SeedData, store_url: str) -> list[Meeting]:
    """Create every seeded meeting in the CRM and store our copy of it."""
    connector = build_connector(CRM, settings)
    try:
        with Store(store_url) as store:
            return make_real(
                data.meetings,
                crm=CrmKind.HUBSPOT,
                connector=connector,
                store=store,
                organizer=Person(ORGANIZER, "Rep Zero"),
                provider=PROVIDER,
                id_prefix="job",
            )
    finally:
        connector.close()


def make_world(tmp_path: Path, store_url: str, *, extra: str = "") -> Iterator[World]:
    """A started world; stops its sandbox afterwards (use from a fixture)."""
    sandbox = Sandbox([CRM, PROVIDER], seed=seed_spec())
    sandbox.start()
    try:
        assert sandbox.data is not None
        upgrade(store_url)
        config = write_config(sandbox, tmp_path / "crm-meetings.toml", store_url, extra=extra)
        meetings = schedule_seeded(load_settings(config, env={}), sandbox.data, store_url)
        yield World(sandbox, sandbox.data, config, store_url, meetings)
    finally:
        sandbox.stop()
