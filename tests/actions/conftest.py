"""Rigs the action suite runs on: the in-memory stand-ins, and each CRM harness in
``tests/contract/harness_*.py`` (the real connector against the sandbox) once it exists."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from crm_meetings.actions import ActionContext
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import NotFoundError
from crm_meetings.model import MeetingStatus, Person, RecordRef
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.testing import sandbox, sandbox_factory  # noqa: F401
from crm_meetings.store import Store, upgrade

CONTRACT = Path(__file__).parent.parent / "contract"
ORGANIZER = Person("olivia@acme.example", "Olivia Organizer")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"actions_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


HARNESSES = sorted(CONTRACT.glob("harness_*.py"))
standins = _load(Path(__file__).parent / "standins.py")
MemoryCrm = standins.MemoryCrm
MemoryProvider = standins.MemoryProvider


class Rig:
    """One CRM (and maybe a provider) to run the actions against, with fault controls."""

    name = "rig"
    connector: Connector
    provider: Any
    related: RecordRef

    def fail_crm(self, operation: str, kind: str, times: int = 1) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def touch(self, record_id: str) -> None:
        """Someone else edits the record in the CRM."""
        raise NotImplementedError

    def crm_status(self, record_id: str) -> MeetingStatus | None:
        try:
            return self.connector.get(record_id).status
        except NotFoundError:
            return None

    def crm_uids(self) -> list[str]:
        """UIDs of the meetings on the related record that our actions made (``act…``)."""
        return [
            m.uid for m in self.connector.list_for_record(self.related) if m.uid.startswith("act")
        ]


class MemoryRig(Rig):
    name = "memory"

    def __init__(self, clock: Callable[[], Any]) -> None:
        self.crm = MemoryCrm(clock)
        self.connector = self.crm
        self.provider = MemoryProvider()
        self.related = RecordRef("Account", "001A")

    def fail_crm(self, operation: str, kind: str, times: int = 1) -> None:
        self.crm.faults.add(operation, kind, times)

    def clear(self) -> None:
        self.crm.faults.clear()
        if self.provider is not None:
            self.provider.faults.clear()

    def touch(self, record_id: str) -> None:
        self.crm.touch(record_id)


#: the HTTP methods each CRM write uses; Salesforce creates Events by upsert on their
#: external id (PATCH), so a create fault must cover PATCH as well as POST
_METHODS = {"create": ("POST", "PATCH"), "update": ("PATCH", "PUT"), "delete": ("DELETE",)}


class SandboxRig(Rig):
    def __init__(self, harness: ModuleType, box: Any) -> None:
        self.name = harness.VENDOR
        self.sandbox = box
        self.connector = harness.make_connector(box)
        self.provider = None  # the conferencing providers have not landed yet
        self.related = harness.related_record(box)

    def fail_crm(self, operation: str, kind: str, times: int = 1) -> None:
        fault = FaultKind.RATE_LIMITED if kind == "refused" else FaultKind.SERVER_ERROR
        plan = FaultPlan(fail_next=20 * times, fail_kind=fault, retry_after=0.0)
        for method in _METHODS[operation]:
            self.sandbox.faults.set(self.name, plan, method=method)

    def clear(self) -> None:
        self.sandbox.faults.clear(self.name)

    def touch(self, record_id: str) -> None:
        time.sleep(1.1)  # CRMs keep modified times to the second
        current = self.connector.get(record_id)
        edited, change = current.revise(notes=current.notes + " (edited in CRM)")
        self.connector.update(edited, change)


@pytest.fixture(params=["memory", *(p.stem.removeprefix("harness_") for p in HARNESSES)])
def rig(request: pytest.FixtureRequest, clock: Callable[[], Any]) -> Rig:
    if request.param == "memory":
        return MemoryRig(clock)
    harness = _load(CONTRACT / f"harness_{request.param}.py")
    box = request.getfixturevalue("sandbox_factory")([harness.VENDOR])
    return SandboxRig(harness, box)


@pytest.fixture
def store(store_url: str, clock: Callable[[], Any]) -> Iterator[Store]:
    """A store migrated up to the actions' revision (later ones are not ours to need)."""
    upgrade(store_url, "0004")
    with Store(store_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def ctx(store: Store, rig: Rig, clock: Callable[[], Any]) -> ActionContext:
    ids = itertools.count(1)
    return ActionContext(
        store=store,
        connector=rig.connector,
        provider=rig.provider,
        actor=ORGANIZER,
        clock=clock,
        id_factory=lambda: f"act{next(ids):04d}",
    )


@pytest.fixture
def as_other() -> Callable[[ActionContext], ActionContext]:
    return lambda ctx: replace(ctx, actor=Person("mallory@acme.example"))
