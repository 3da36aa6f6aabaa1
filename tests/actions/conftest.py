"""Rigs the action suite runs on: each CRM's real connector (``tests/contract/harness_*.py``)
and a real conferencing provider (``tests/conferencing/conftest.py``'s builders), all over
HTTPS against one sandbox seeded with the same users, so nothing of ours is stood in for.

Every CRM runs with Zoom; GoTo Meeting runs with HubSpot. The acting organizer is the
seed's first user, whom both provider emulators know (GoTo creates meetings for the
token's organizer, so the GoTo token is issued to that user).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from crm_meetings.actions import ActionContext
from crm_meetings.conferencing import ConferencingProvider
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import NotFoundError
from crm_meetings.model import MeetingStatus, Person, RecordRef
from crm_meetings.sandbox.base import FaultKind, FaultPlan
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import SandboxFactory, load_module, sandbox_factory  # noqa: F401
from crm_meetings.store import Store, upgrade

TESTS = Path(__file__).parent.parent


providers = load_module(TESTS / "conferencing" / "conftest.py")
ORGANIZER = Person(providers.SEED_ORGANIZER, "Ada Lovelace")
CRMS = sorted(p.stem.removeprefix("harness_") for p in (TESTS / "contract").glob("harness_*.py"))
RIGS = [*(f"{crm}-zoom" for crm in CRMS), *(["hubspot-goto"] if "hubspot" in CRMS else [])]

#: the (method, endpoint) pairs each write uses; a CRM create is named by its endpoint,
#: since reads before it (the related-record check) also POST on HubSpot and Zoho, and
#: Salesforce creates Events by upsert on their external id (PATCH)
_METHODS = {"create": ("POST",), "update": ("PATCH", "PUT"), "delete": ("DELETE",)}
_CREATES = {
    "salesforce": ("PATCH", "*/composite/sobjects/{sobject}/{field}"),
    "hubspot": ("POST", "*/objects/{objectType}/batch/create"),
    "zoho": ("POST", "/crm/v8/{module}"),
}
#: "refused": the vendor said no (429), nothing happened; "unknown": a 503, which the
#: caller cannot tell from "done, but the answer was lost"
_KINDS = {"refused": FaultKind.RATE_LIMITED, "unknown": FaultKind.SERVER_ERROR}


class Rig:
    """One CRM and one conferencing provider on a sandbox, with fault controls and views
    of what each emulator holds."""

    def __init__(self, crm: str, provider: str, box: Sandbox, *, timeout: float = 10.0) -> None:
        harness = load_module(TESTS / "contract" / f"harness_{crm}.py")
        self.name = f"{crm}-{provider}"
        self.crm = crm
        self.provider_vendor = provider
        self.sandbox = box
        self.connector: Connector = harness.make_connector(box, timeout=timeout)
        build = providers.build_zoom if provider == "zoom" else providers.build_goto
        self.provider: ConferencingProvider = build(box, [], timeout=timeout)
        stored = providers._zoom_stored if provider == "zoom" else providers._goto_stored
        self.provider_meeting: Callable[[str], Mapping[str, Any]] = stored(box)
        self.related: RecordRef = harness.related_record(box)
        self._seeded = set(box.state(provider)["meetings"])

    def close(self) -> None:
        """Close the clients' connections while the sandbox still serves them."""
        self.provider.close()
        self.connector.close()

    def _fail(self, vendor: str, operation: str, kind: str, times: int) -> None:
        plan = FaultPlan(fail_next=20 * times, fail_kind=_KINDS[kind], retry_after=0.0)
        targets = [(method, "*") for method in _METHODS[operation]]
        if operation == "create" and vendor in _CREATES:
            targets = [_CREATES[vendor]]
        for method, endpoint in targets:
            self.sandbox.faults.set(vendor, plan, method=method, endpoint=endpoint)

    def fail_crm(self, operation: str, kind: str, times: int = 1) -> None:
        self._fail(self.crm, operation, kind, times)

    def fail_provider(self, operation: str, kind: str, times: int = 1) -> None:
        self._fail(self.provider_vendor, operation, kind, times)

    def clear(self) -> None:
        self.sandbox.faults.clear(self.crm)
        self.sandbox.faults.clear(self.provider_vendor)

    def touch(self, record_id: str) -> None:
        """Someone else edits the record in the CRM."""
        time.sleep(1.1)  # CRMs keep modified times to the second
        current = self.connector.get(record_id)
        edited, change = current.revise(description=current.description + " (edited in CRM)")
        self.connector.update(edited, change)

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

    def crm_creates(self) -> int:
        """Create calls the CRM answered (a record or a refusal: each one was sent)."""
        method, endpoint = _CREATES[self.crm]
        return self.sandbox.calls.count(self.crm, method=method, endpoint=endpoint)

    def crm_count(self, uid: str) -> int:
        """CRM records carrying ``uid``, wherever they are (a full read of the CRM)."""
        return sum(
            meeting.uid == uid
            for page in self.connector.changed_since(None)
            for meeting in page.meetings
        )

    def provider_ids(self) -> list[str]:
        """Provider meetings our actions created (deleted ones included), oldest first."""
        made = self.sandbox.state(self.provider_vendor)["meetings"]
        return sorted((pid for pid in made if pid not in self._seeded), key=int)

    def live(self) -> list[str]:
        """Provider meetings our actions created that are not cancelled or deleted."""
        return [pid for pid in self.provider_ids() if not self.provider_meeting(pid)["deleted"]]


@pytest.fixture(params=RIGS)
def rig(request: pytest.FixtureRequest, sandbox_factory: SandboxFactory) -> Iterator[Rig]:  # noqa: F811
    crm, provider = request.param.split("-")
    built = Rig(crm, provider, sandbox_factory([crm, provider]))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def zoom_and_goto(
    sandbox_factory: SandboxFactory,  # noqa: F811
) -> Iterator[tuple[Sandbox, Rig, Rig]]:
    """HubSpot with Zoom (the default provider) and HubSpot with GoTo, on one sandbox: a
    deployment where a rep may schedule on either."""
    box = sandbox_factory(["hubspot", "zoom", "goto"])
    zoom, goto = Rig("hubspot", "zoom", box), Rig("hubspot", "goto", box)
    try:
        yield box, zoom, goto
    finally:
        goto.close()
        zoom.close()


@pytest.fixture
def store(store_url: str, clock: Callable[[], Any]) -> Iterator[Store]:
    """A store migrated to the head: cancel and delete give a rotation's count back, so the
    actions need the routing tables too."""
    upgrade(store_url)
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
