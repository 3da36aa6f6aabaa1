"""pytest fixtures for tests that talk to the sandbox (imported only by tests).

In a test directory's ``conftest.py``::

    from crm_meetings.sandbox.testing import sandbox, sandbox_factory  # noqa: F401

``sandbox_factory(vendors, seed=..., http=...)`` returns a started :class:`Sandbox` that is
stopped at teardown; ``sandbox`` is every available emulator with :data:`SMALL_SEED` loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import pytest

from crm_meetings.sandbox.base import SandboxEnv, VendorEmulator
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox

__all__ = ["SMALL_SEED", "SandboxFactory", "sandbox", "sandbox_factory"]

SMALL_SEED = SeedSpec(seed=42, meetings=20, organizers=3, records=10)


class SandboxFactory(Protocol):
    def __call__(
        self,
        vendors: Sequence[str | VendorEmulator] | None = None,
        *,
        seed: SeedSpec | None = SMALL_SEED,
        env: SandboxEnv | None = None,
        http: bool = False,
    ) -> Sandbox: ...


@pytest.fixture
def sandbox_factory() -> Iterator[SandboxFactory]:
    """Build and start sandboxes (seeded with :data:`SMALL_SEED` unless told otherwise)."""
    started: list[Sandbox] = []

    def build(
        vendors: Sequence[str | VendorEmulator] | None = None,
        *,
        seed: SeedSpec | None = SMALL_SEED,
        env: SandboxEnv | None = None,
        http: bool = False,
    ) -> Sandbox:
        box = Sandbox(vendors, seed=seed, env=env, http=http)
        started.append(box)
        return box.start()

    try:
        yield build
    finally:
        for box in reversed(started):
            box.stop()


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> Sandbox:
    """Every available emulator, seeded with :data:`SMALL_SEED`, started for this test."""
    return sandbox_factory()
