"""The contract between the sandbox core and each vendor emulator.

Each vendor (salesforce, hubspot, zoho, goto, zoom) is one :class:`VendorEmulator`: it
builds an ASGI app speaking the vendor's documented wire format, formats the vendor's
own error bodies, loads seeded data and exposes its state for inspection. The core
(``sandbox/server.py``) serves every emulator over HTTPS on its own loopback port and
wraps each app with the shared machinery defined here:

- :class:`CallLog` counts every request by vendor, endpoint (route template) and method;
- :class:`Faults` decides per request whether to add latency or answer with a fault,
  which the emulator renders in its vendor's format (:meth:`VendorEmulator.fault_response`);
- :class:`Tokens` issues and checks access / refresh tokens; emulators check the
  ``Authorization`` header themselves (each vendor has its own scheme and 401 body);
- :class:`Rejections` holds field validation rules ("refuse records whose <field>
  equals / matches X"), per vendor, object and endpoint; each CRM emulator asks
  :meth:`Rejections.check` for every record it saves, single or in a batch, and answers
  with its own per-record validation error, so one record of a batch fails and the others
  are saved (the middleware names the request's endpoint: :func:`current_request`).
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.responses import Response

__all__ = [
    "CURRENT_REQUEST",
    "CallLog",
    "FaultDecision",
    "FaultKind",
    "FaultPlan",
    "Faults",
    "RecordedCall",
    "Rejection",
    "Rejections",
    "SandboxEnv",
    "Tokens",
    "VendorEmulator",
    "current_request",
]


@dataclass(frozen=True, slots=True)
class RecordedCall:
    vendor: str
    endpoint: str  # the route template, e.g. /services/data/v62.0/sobjects/Event/{id}
    method: str
    status: int


class CallLog:
    """Every request the emulators answered; tests and benchmarks read API-call counts here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self._by_vendor: Counter[str] = Counter()  # so a vendor's total costs no scan

    def record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)
            self._by_vendor[call.vendor] += 1

    def calls(self, vendor: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if vendor is None or c.vendor == vendor]

    def count(
        self,
        vendor: str | None = None,
        *,
        endpoint: str | None = None,
        method: str | None = None,
        status: int | None = None,
    ) -> int:
        """Calls matching every given filter; ``endpoint`` may be a glob (``*/composite/*``)."""
        if endpoint is None and method is None and status is None:
            with self._lock:
                return self._by_vendor[vendor] if vendor is not None else len(self._calls)
        return sum(
            1
            for c in self.calls(vendor)
            if (endpoint is None or fnmatchcase(c.endpoint, endpoint))
            and (method is None or c.method == method.upper())
            and (status is None or c.status == status)
        )

    def table(self) -> Counter[tuple[str, str, str]]:
        """``{(vendor, method, endpoint): count}`` for printing."""
        return Counter((c.vendor, c.method, c.endpoint) for c in self.calls())

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._by_vendor.clear()


class FaultKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429 (or the vendor's own limit status) + its headers
    SERVER_ERROR = "server_error"  # 500/503 in the vendor's format
    UNAUTHORIZED = "unauthorized"  # the vendor's expired-token 401
    DROP = "drop"  # the connection closes without a response
    TIMEOUT = "timeout"  # the request is carried out, its answer held past the client's
    # read timeout (``FaultPlan.hold``), then the connection closes: the client cannot
    # tell whether it happened


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Faults for the requests one rule matches. Rates are shares in [0, 1]."""

    latency: float = 0.0  # seconds added to every matching request
    jitter: float = 0.0  # plus uniform [0, jitter) seconds
    rate_limited: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    timeout: float = 0.0
    hold: float = 30.0  # seconds a timed-out answer is held: above the client's read timeout
    retry_after: float = 1.0  # seconds announced with rate-limit faults
    fail_next: int = 0  # the next N matching requests fail deterministically ...
    fail_kind: FaultKind = FaultKind.SERVER_ERROR  # ... with this fault


@dataclass(frozen=True, slots=True)
class FaultDecision:
    latency: float = 0.0
    kind: FaultKind | None = None
    retry_after: float = 1.0
    hold: float = 30.0


@dataclass
class _Rule:
    vendor: str
    endpoint: str
    method: str
    plan: FaultPlan
    remaining: int


class Faults:
    """Per-vendor, per-endpoint fault rules; the newest matching rule wins. Seeded."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)

    def set(self, vendor: str, plan: FaultPlan, *, endpoint: str = "*", method: str = "*") -> None:
        with self._lock:
            self._rules.append(_Rule(vendor, endpoint, method.upper(), plan, plan.fail_next))

    def clear(self, vendor: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if vendor is not None and r.vendor != vendor]

    def decide(self, vendor: str, endpoint: str, method: str) -> FaultDecision:
        with self._lock:
            rule = next(
                (
                    r
                    for r in reversed(self._rules)
                    if r.vendor == vendor
                    and fnmatchcase(endpoint, r.endpoint)
                    and (r.method == "*" or r.method == method.upper())
                ),
                None,
            )
            if rule is None:
                return FaultDecision()
            plan = rule.plan
            latency = plan.latency + (self._random.uniform(0, plan.jitter) if plan.jitter else 0)
            if rule.remaining > 0:
                rule.remaining -= 1
                return FaultDecision(latency, plan.fail_kind, plan.retry_after, plan.hold)
            draw = self._random.random()
            for kind, share in (
                (FaultKind.RATE_LIMITED, plan.rate_limited),
                (FaultKind.SERVER_ERROR, plan.server_error),
                (FaultKind.DROP, plan.drop),
                (FaultKind.TIMEOUT, plan.timeout),
            ):
                if draw < share:
                    return FaultDecision(latency, kind, plan.retry_after, plan.hold)
                draw -= share
            return FaultDecision(latency, None, plan.retry_after, plan.hold)


@dataclass
class _Token:
    vendor: str
    expires_at: datetime
    subject: str


class Tokens:
    """Access and refresh tokens per vendor; ``expire`` simulates expiry mid-run."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}

    def issue(self, vendor: str, *, ttl: float = 3600.0, subject: str = "") -> str:
        token = f"{vendor[:2]}-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._access[token] = _Token(vendor, self._clock() + timedelta(seconds=ttl), subject)
        return token

    def issue_refresh(self, vendor: str, *, subject: str = "") -> str:
        token = f"{vendor[:2]}r-{secrets.token_urlsafe(24)}"
        with self._lock:
            self._refresh[token] = _Token(vendor, datetime.max.replace(tzinfo=UTC), subject)
        return token

    def check(self, vendor: str, token: str | None) -> bool:
        """Whether ``token`` is a live access token of ``vendor`` (compared by lookup)."""
        if not token:
            return False
        with self._lock:
            entry = self._access.get(token)
        return entry is not None and entry.vendor == vendor and entry.expires_at > self._clock()

    def subject(self, token: str) -> str | None:
        with self._lock:
            entry = self._access.get(token)
        return entry.subject if entry else None

    def refresh(self, vendor: str, refresh_token: str, *, ttl: float = 3600.0) -> str | None:
        """A new access token for a valid refresh token, else ``None``."""
        with self._lock:
            entry = self._refresh.get(refresh_token)
        if entry is None or entry.vendor != vendor:
            return None
        return self.issue(vendor, ttl=ttl, subject=entry.subject)

    def expire(self, vendor: str) -> None:
        """Every access token of ``vendor`` stops working now (refresh tokens still do)."""
        with self._lock:
            for token in self._access.values():
                if token.vendor == vendor:
                    token.expires_at = datetime.min.replace(tzinfo=UTC)


CURRENT_REQUEST: ContextVar[tuple[str, str] | None] = ContextVar("sandbox_request", default=None)


def current_request() -> tuple[str, str] | None:
    """``(endpoint template, method)`` of the request being answered (set by the middleware)."""
    return CURRENT_REQUEST.get()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A field validation rule: records whose ``field`` equals ``value`` (or, with
    ``pattern``, whose text matches that regular expression) are refused with the vendor's
    validation error, one record at a time (the rest of a batch is saved).

    ``field`` is the vendor's field name (``Subject``, ``hs_meeting_title``, ``Event_Title``;
    compared case-insensitively); ``object_type`` (``Event``, ``meetings``, ``Events``),
    ``endpoint`` (a route template) and ``method`` are globs. ``times`` limits the rule to
    the next N records it refuses (``None``: always). ``message`` replaces the emulator's
    default message.
    """

    vendor: str
    field: str
    value: str | None = None
    pattern: str | None = None
    object_type: str = "*"
    endpoint: str = "*"
    method: str = "*"
    message: str | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.pattern is None):
            raise ValueError("a rejection needs exactly one of value and pattern")
        if self.pattern is not None:
            re.compile(self.pattern)  # fail on the caller's side, not mid-request
        if not self.field:
            raise ValueError("a rejection needs a field")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be a positive count")

    def applies(self, vendor: str, object_type: str, endpoint: str, method: str) -> bool:
        return (
            self.vendor == vendor
            and fnmatchcase(object_type, self.object_type)
            and fnmatchcase(endpoint, self.endpoint)
            and (self.method == "*" or self.method.upper() == method.upper())
        )

    def refuses(self, value: object) -> bool:
        if value is None:
            return False
        text = value if isinstance(value, str) else _text(value)
        if self.pattern is not None:
            return re.search(self.pattern, text) is not None
        return text == self.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "field": self.field,
            "value": self.value,
            "pattern": self.pattern,
            "object_type": self.object_type,
            "endpoint": self.endpoint,
            "method": self.method,
            "message": self.message,
            "times": self.times,
        }


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):  # a lookup: {"id": ...}
        return str(value.get("id", value))
    return str(value)


@dataclass
class _RejectionRule:
    rule: Rejection
    remaining: int | None


class Rejections:
    """Field validation rules per vendor, object and endpoint (see :class:`Rejection`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_RejectionRule] = []

    def add(self, rule: Rejection) -> Rejection:
        with self._lock:
            self._rules.append(_RejectionRule(rule, rule.times))
        return rule

    def clear(self, vendor: str | None = None) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if vendor is not None and r.rule.vendor != vendor]

    def rules(self, vendor: str | None = None) -> list[Rejection]:
        with self._lock:
            return [r.rule for r in self._rules if vendor is None or r.rule.vendor == vendor]

    def check(
        self,
        vendor: str,
        object_type: str,
        values: Mapping[str, Any],
        *,
        endpoint: str | None = None,
        method: str | None = None,
    ) -> list[tuple[str, Rejection]]:
        """``(field name as in values, rule)`` for each field of this record the rules refuse
        (one per field, newest rule first). ``endpoint`` and ``method`` default to the
        current request's. A rule with ``times`` counts the records it refuses."""
        if not self._rules:
            return []
        request = current_request()
        endpoint = endpoint if endpoint is not None else (request[0] if request else "")
        method = method if method is not None else (request[1] if request else "")
        names = {name.casefold(): name for name in values}
        found: dict[str, tuple[str, Rejection]] = {}
        with self._lock:
            for entry in reversed(self._rules):
                rule = entry.rule
                name = names.get(rule.field.casefold())
                if (
                    name is None
                    or name in found
                    or entry.remaining == 0
                    or not rule.applies(vendor, object_type, endpoint, method)
                    or not rule.refuses(values[name])
                ):
                    continue
                if entry.remaining is not None:
                    entry.remaining -= 1
                found[name] = (name, rule)
        return list(found.values())


@dataclass
class SandboxEnv:
    """What the core shares with every emulator."""

    calls: CallLog = field(default_factory=CallLog)
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    tokens: Tokens = field(init=False)
    rejections: Rejections = field(default_factory=Rejections)
    base_urls: dict[str, str] = field(default_factory=dict)  # vendor -> https://127.0.0.1:port

    def __post_init__(self) -> None:
        self.tokens = Tokens(self.clock)


class VendorEmulator(Protocol):
    """One vendor's API, as documented, in memory."""

    name: str  # "salesforce" | "hubspot" | "zoho" | "goto" | "zoom"

    def build_app(self, env: SandboxEnv) -> Starlette:
        """The vendor's routes (a FastAPI or Starlette app); the core adds accounting and
        faults around it, so the app itself only implements the documented behaviour."""
        ...

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        """The vendor's own body, status and headers for an injected fault."""
        ...

    def load(self, data: Any) -> None:
        """Load seeded data (``sandbox.seed.SeedData``) in the vendor's own shape."""
        ...

    def state(self) -> Mapping[str, Any]:
        """A JSON-ready snapshot of what the vendor now holds, for assertions."""
        ...
