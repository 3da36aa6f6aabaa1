"""pytest fixtures for tests that talk to the sandbox, and :func:`load_module` for test
helper files (imported only by tests and benchmarks).

In a test directory's ``conftest.py``::

    from crm_meetings.sandbox.testing import sandbox, sandbox_factory  # noqa: F401

``sandbox_factory(vendors, seed=..., http=...)`` returns a started :class:`Sandbox` that is
stopped at teardown; ``sandbox`` is every available emulator with :data:`SMALL_SEED` loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

import pytest

from crm_meetings.sandbox.base import SandboxEnv, VendorEmulator
from crm_meetings.sandbox.seed import SeedSpec
from crm_meetings.sandbox.server import Sandbox

__all__ = ["SMALL_SEED", "SandboxFactory", "load_module", "sandbox", "sandbox_factory"]

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


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """The Python file at ``path`` as a module named ``name``, executed once per name.

    Test helpers are files, not packages, so they are loaded by path. The module is put
    in :data:`sys.modules` before it runs (dataclasses look their module up there), and a
    later call with the same name returns that module: callers that load one helper share
    one copy. The default name comes from the path below the nearest ``tests`` folder
    (``tests/sync/test_jobs_world.py`` is ``tests_sync_test_jobs_world``); a file outside
    one is named by its stem and a digest of its full path.
    """
    path = path.resolve()
    if name is None:
        name = _default_name(path)
    loaded = sys.modules.get(name)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        if origin is None or Path(origin).resolve() != path:
            raise ImportError(f"module {name!r} is already loaded from {origin}, not {path}")
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _default_name(path: Path) -> str:
    root = next((parent for parent in path.parents if parent.name == "tests"), None)
    if root is None:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        return f"{_identifier(path.stem)}_{digest}"
    return _identifier("_".join(path.relative_to(root.parent).with_suffix("").parts))


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)
