"""The vendor emulators by name, imported only when asked for.

``create("zoom")`` builds a fresh :class:`~crm_meetings.sandbox.base.VendorEmulator`;
``create_all()`` builds every emulator whose module is present. ``create("pkg.mod:Class")``
builds any other emulator class (a test's or a plug-in's). An unknown name is a
:class:`~crm_meetings.errors.ValidationError` that lists the valid names; a known name whose
module does not exist (yet) is a :class:`~crm_meetings.errors.NotFoundError` when asked for
explicitly and is skipped by :func:`available`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from crm_meetings.errors import NotFoundError, ValidationError
from crm_meetings.sandbox.base import VendorEmulator

__all__ = [
    "EMULATORS",
    "EXAMPLES",
    "Example",
    "available",
    "create",
    "create_all",
    "example",
    "names",
]

#: vendor name -> "module:Class" (a class with a no-argument constructor)
EMULATORS: Mapping[str, str] = MappingProxyType(
    {
        "salesforce": "crm_meetings.sandbox.salesforce:SalesforceEmulator",
        "hubspot": "crm_meetings.sandbox.hubspot:HubSpotEmulator",
        "zoho": "crm_meetings.sandbox.zoho:ZohoEmulator",
        "goto": "crm_meetings.sandbox.goto:GoToEmulator",
        "zoom": "crm_meetings.sandbox.zoom:ZoomEmulator",
    }
)


@dataclass(frozen=True, slots=True)
class Example:
    """One authenticated read of a vendor's API: for people (``sandbox serve``) and benchmarks."""

    path: str
    scheme: str = "Bearer"  # the Authorization scheme the vendor expects

    def authorization(self, token: str) -> str:
        return f"{self.scheme} {token}"


EXAMPLES: Mapping[str, Example] = MappingProxyType(
    {
        "salesforce": Example("/services/data/v62.0/limits"),
        "hubspot": Example("/crm/v3/objects/meetings?limit=10"),
        "zoho": Example(
            "/crm/v8/Events?fields=Event_Title,Start_DateTime&per_page=10", "Zoho-oauthtoken"
        ),
        "goto": Example("/G2M/rest/v2/upcomingMeetings"),
        "zoom": Example("/v2/users/me/meetings?page_size=30"),
    }
)


def example(name: str) -> Example:
    """The vendor's example request (the admin index for an emulator without one)."""
    return EXAMPLES.get(name, Example("/__sandbox__/"))


def names() -> tuple[str, ...]:
    """Every known emulator name, whether or not its module is present."""
    return tuple(EMULATORS)


def _target(name: str) -> tuple[str, str]:
    """``(module, attribute)`` of a registered name or of a ``module:Class`` spec."""
    try:
        module, _, attribute = (name if ":" in name else EMULATORS[name]).partition(":")
    except KeyError:
        raise ValidationError(
            "vendors",
            f"unknown emulator {name!r}; valid names: {', '.join(names())}",
        ) from None
    return module, attribute


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, an empty name
        return False


def available() -> tuple[str, ...]:
    """The known emulators whose module exists, in registry order."""
    return tuple(name for name in EMULATORS if _present(_target(name)[0]))


def create(name: str) -> VendorEmulator:
    """A fresh emulator for ``name`` (raises if the name is unknown or not available)."""
    module_name, attribute = _target(name)
    if not _present(module_name):
        raise _unavailable(name, f"module {module_name} does not exist yet")
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if factory is None:
        raise _unavailable(name, f"{module_name} defines no {attribute}")
    return cast(VendorEmulator, factory())


def _unavailable(name: str, reason: str) -> NotFoundError:
    return NotFoundError(
        f"the {name} emulator is not available: {reason}",
        hint=f"Choose among the available emulators: {', '.join(available()) or 'none'}.",
    )


def create_all(vendors: Iterable[str] | None = None) -> list[VendorEmulator]:
    """Emulators for ``vendors`` (each must be available), or for every available one."""
    chosen = available() if vendors is None else tuple(dict.fromkeys(vendors))
    for name in chosen:
        _target(name)  # report an unknown name before importing anything
    return [create(name) for name in chosen]
