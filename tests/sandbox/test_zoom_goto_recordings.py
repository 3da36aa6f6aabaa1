"""Replay recordings/zoom and recordings/goto against the emulators: same status, same shape.

Each recording is a request/response pair taken from the vendor's published reference
(its ``source``). Placeholders in the request (``{meetingId}``…) are filled with seeded
values; the emulator's answer must have every documented field, with the same JSON type.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.goto import GoToEmulator
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory
from crm_meetings.sandbox.zoom import ZoomEmulator

RECORDINGS = Path(__file__).parents[2] / "recordings"
SEED = SeedSpec(seed=3, meetings=16, organizers=2, records=4, started_share=0.8)
REPLAYED = sorted(
    path
    for vendor in ("zoom", "goto")
    for path in (RECORDINGS / vendor).glob("*.json")
    if path.stem != "meeting_ended_webhook"
)


def same_shape(documented: Any, got: Any, where: str = "body") -> None:
    """Every documented key is present with the documented JSON type (lists: first item)."""
    if isinstance(documented, Mapping):
        assert isinstance(got, Mapping), f"{where}: expected an object, got {got!r}"
        for key, value in documented.items():
            assert key in got, f"{where}.{key} is missing"
            same_shape(value, got[key], f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(got, list), f"{where}: expected an array, got {got!r}"
        if documented:
            assert got, f"{where}: expected items"
            same_shape(documented[0], got[0], f"{where}[0]")
    elif isinstance(documented, bool) or documented is None:
        assert type(got) is type(documented), f"{where}: {got!r} is not {documented!r}'s type"
    elif isinstance(documented, (int, float)):
        assert not isinstance(got, bool), f"{where}: {got!r}"
        assert isinstance(got, (int, float)), f"{where}: {got!r}"
    else:
        assert isinstance(got, type(documented)), f"{where}: {got!r} is not a string"


def test_every_recording_names_its_source() -> None:
    paths = sorted([*RECORDINGS.glob("zoom/*.json"), *RECORDINGS.glob("goto/*.json")])
    assert len(paths) >= 15
    for path in paths:
        recording = json.loads(path.read_text())
        assert recording["source"].startswith("https://"), path
        assert {"request", "response"} <= set(recording), path


@pytest.fixture
def box(sandbox_factory: SandboxFactory) -> Sandbox:
    return sandbox_factory([ZoomEmulator(), GoToEmulator()], seed=SEED)


def _values(box: Sandbox, vendor: str) -> dict[str, str]:
    data = box.data
    assert data is not None
    meeting = next(m for m in data.meetings if m.provider == vendor and m.sessions)
    organizer = data.user(meeting.organizer).email
    values = {
        "meetingId": meeting.provider_meeting_id,
        "userId": organizer,
        "organizerEmail": organizer,
        "missingMeetingId": "12345678901",
        "accountId": "sandbox-account",
    }
    if vendor == "goto":
        goto = box.emulator("goto")
        assert isinstance(goto, GoToEmulator)
        values["organizerKey"] = str(goto.organizer_key(organizer))
    return values


def _fill(text: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


@pytest.fixture
def clients(box: Sandbox) -> Iterator[dict[str, httpx.Client]]:
    opened = {
        vendor: httpx.Client(base_url=box.url(vendor), verify=box.ssl_context())
        for vendor in ("zoom", "goto")
    }
    try:
        yield opened
    finally:
        for client in opened.values():
            client.close()


@pytest.mark.parametrize("path", REPLAYED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_replay(path: Path, box: Sandbox, clients: dict[str, httpx.Client]) -> None:
    vendor = path.parent.name
    recording = json.loads(path.read_text())
    request, documented = recording["request"], recording["response"]
    values = _values(box, vendor)
    headers = {"Authorization": f"Bearer {box.token(vendor)}"}
    for name, value in request.get("headers", {}).items():
        if value.startswith("Basic"):
            secret = box.refresh_token(vendor)
            headers[name] = "Basic " + base64.b64encode(f"client:{secret}".encode()).decode()
            values["refreshToken"] = secret
        elif name.lower() != "content-type":
            headers[name] = value
    if documented["status"] == 429:
        box.set_faults(vendor, FaultPlan(fail_next=1, fail_kind=FaultKind.RATE_LIMITED))
    form = {k: _fill(v, values) for k, v in request["form"].items()} if "form" in request else None
    answer = clients[vendor].request(
        request["method"],
        _fill(request["path"], values),
        params={k: _fill(v, values) for k, v in request.get("query", {}).items()},
        json=request.get("body"),
        data=form,
        headers=headers,
    )
    assert answer.status_code == documented["status"], answer.text
    for name in documented.get("headers", {}):
        assert name in answer.headers, name
    if "body" in documented:
        same_shape(documented["body"], answer.json())


def test_meeting_ended_event_matches_the_recording(box: Sandbox) -> None:
    recording = json.loads((RECORDINGS / "zoom" / "meeting_ended_webhook.json").read_text())
    zoom = box.emulator("zoom")
    assert isinstance(zoom, ZoomEmulator)
    meeting_id = _values(box, "zoom")["meetingId"]
    same_shape(recording["request"]["body"], zoom.meeting_ended_event(meeting_id))
