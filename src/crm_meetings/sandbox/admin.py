"""The sandbox's controls: a Python API (:class:`Controls`) and the same over HTTP.

Every vendor port serves, next to the vendor's API, these admin endpoints (never counted,
never faulted); each acts on that port's vendor unless the body names another:

========================================  ==================================================
``GET    /__sandbox__/``                  the vendor's name and these endpoints
``GET    /__sandbox__/calls``             call counts by method and endpoint (and status)
``DELETE /__sandbox__/calls``             forget every recorded call (all vendors)
``POST   /__sandbox__/faults``            add a rule: FaultPlan fields + endpoint, method
``DELETE /__sandbox__/faults``            remove the vendor's rules
``GET    /__sandbox__/rejections``        the vendor's field validation rules
``POST   /__sandbox__/rejections``        add one: field, value or pattern, object_type,
                                          endpoint, method, message, times
``DELETE /__sandbox__/rejections``        remove the vendor's validation rules
``GET    /__sandbox__/state``             the emulator's snapshot
``POST   /__sandbox__/tokens``            issue an access and a refresh token (``ttl``)
``POST   /__sandbox__/tokens/expire``     every access token of the vendor expires now
========================================  ==================================================

For example::

    curl --cacert CA -X POST https://127.0.0.1:PORT/__sandbox__/faults \\
         -d '{"endpoint": "*/query", "rate_limited": 0.5, "retry_after": 2}'
    curl --cacert CA -X POST https://127.0.0.1:PORT/__sandbox__/rejections \\
         -d '{"field": "Subject", "value": "Board review"}'
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_meetings.errors import CrmMeetingsError, ValidationError
from crm_meetings.sandbox.base import (
    CallLog,
    FaultKind,
    FaultPlan,
    Faults,
    Rejection,
    Rejections,
    SandboxEnv,
    VendorEmulator,
)
from crm_meetings.sandbox.middleware import ADMIN_PREFIX

__all__ = ["Controls", "FaultRule", "admin_app", "fault_rule", "rejection_rule"]

_PLAN_FIELDS = {f.name: f for f in dataclasses.fields(FaultPlan)}


@dataclass(frozen=True, slots=True)
class FaultRule:
    """A :class:`FaultPlan` and the requests it applies to (globs for endpoint and method)."""

    vendor: str
    plan: FaultPlan
    endpoint: str = "*"
    method: str = "*"

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "endpoint": self.endpoint,
            "method": self.method,
            "plan": dataclasses.asdict(self.plan),
        }


def _plan_value(name: str, value: object) -> object:
    if name == "fail_kind":
        try:
            return FaultKind(str(value))
        except ValueError:
            kinds = ", ".join(kind.value for kind in FaultKind)
            raise ValidationError(name, f"{value!r} is not one of {kinds}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"{value!r} is not a number")
    if name == "fail_next":
        if value != int(value) or value < 0:
            raise ValidationError(name, f"{value!r} is not a count")
        return int(value)
    if value < 0 or (name in ("rate_limited", "server_error", "drop") and value > 1):
        raise ValidationError(name, f"{value!r} is out of range")
    return float(value)


def fault_rule(payload: object, *, vendor: str) -> FaultRule:
    """Parse ``{"endpoint", "method", "vendor", ...FaultPlan fields}`` (all optional)."""
    if not isinstance(payload, Mapping):
        raise ValidationError("body", "expected a JSON object")
    targets = {"vendor": vendor, "endpoint": "*", "method": "*"}
    plan: dict[str, object] = {}
    for key, value in payload.items():
        if key in targets:
            if not isinstance(value, str) or not value:
                raise ValidationError(key, f"{value!r} is not a non-empty string")
            targets[key] = value
        elif key in _PLAN_FIELDS:
            plan[key] = _plan_value(key, value)
        else:
            valid = ", ".join([*targets, *_PLAN_FIELDS])
            raise ValidationError(str(key), f"unknown field; valid fields: {valid}")
    return FaultRule(
        targets["vendor"],
        FaultPlan(**plan),  # type: ignore[arg-type]
        targets["endpoint"],
        targets["method"].upper(),
    )


_REJECTION_TEXT = ("vendor", "field", "value", "pattern", "object_type", "endpoint", "method")


def rejection_rule(payload: object, *, vendor: str) -> Rejection:
    """Parse ``{"field", "value" | "pattern", "object_type", "endpoint", "method", "message",
    "times", "vendor"}`` (``field`` and one of ``value`` / ``pattern`` required)."""
    if not isinstance(payload, Mapping):
        raise ValidationError("body", "expected a JSON object")
    given: dict[str, Any] = {"vendor": vendor}
    for key, value in payload.items():
        if key in _REJECTION_TEXT or key == "message":
            if value is None and key in ("value", "pattern", "message"):
                continue
            if not isinstance(value, str) or (key != "value" and not value):
                raise ValidationError(str(key), f"{value!r} is not a non-empty string")
            given[key] = value
        elif key == "times":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValidationError("times", f"{value!r} is not a positive count")
            given[key] = value
        else:
            valid = ", ".join([*_REJECTION_TEXT, "message", "times"])
            raise ValidationError(str(key), f"unknown field; valid fields: {valid}")
    if "field" not in given:
        raise ValidationError("field", "required: the vendor's field name, e.g. Subject")
    if ("value" in given) == ("pattern" in given):
        raise ValidationError("value", "give exactly one of value and pattern")
    try:
        return Rejection(**given)
    except (ValueError, re.error) as error:
        raise ValidationError("pattern", str(error)) from None


class Controls:
    """Read call counts and state, inject faults, issue and expire tokens — per vendor."""

    def __init__(self, env: SandboxEnv, emulators: Mapping[str, VendorEmulator]) -> None:
        self.env = env
        self.emulators = dict(emulators)

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(self.emulators)

    @property
    def calls(self) -> CallLog:
        return self.env.calls

    @property
    def faults(self) -> Faults:
        return self.env.faults

    def emulator(self, vendor: str) -> VendorEmulator:
        try:
            return self.emulators[vendor]
        except KeyError:
            raise ValidationError(
                "vendor", f"{vendor!r} is not served here; served: {', '.join(self.vendors)}"
            ) from None

    def call_counts(self, vendor: str) -> Counter[tuple[str, str]]:
        """``{(method, endpoint template): count}`` of the vendor's recorded calls."""
        self.emulator(vendor)
        return Counter((c.method, c.endpoint) for c in self.calls.calls(vendor))

    def set_faults(
        self, vendor: str, plan: FaultPlan, *, endpoint: str = "*", method: str = "*"
    ) -> FaultRule:
        """Apply ``plan`` to the vendor's requests matching ``endpoint`` and ``method``."""
        self.emulator(vendor)
        self.faults.set(vendor, plan, endpoint=endpoint, method=method)
        return FaultRule(vendor, plan, endpoint, method.upper())

    def clear_faults(self, vendor: str | None = None) -> None:
        """Remove the vendor's fault rules (every vendor's when ``None``)."""
        self.faults.clear(vendor)

    @property
    def rejections(self) -> Rejections:
        return self.env.rejections

    def reject(
        self,
        vendor: str,
        *,
        field: str,
        value: str | None = None,
        pattern: str | None = None,
        object_type: str = "*",
        endpoint: str = "*",
        method: str = "*",
        message: str | None = None,
        times: int | None = None,
    ) -> Rejection:
        """Refuse the vendor's records whose ``field`` equals ``value`` (or matches the regular
        expression ``pattern``) with the vendor's own validation error, record by record:
        in a batch, the other records are saved. See :class:`~crm_meetings.sandbox.base.Rejection`.
        """
        self.emulator(vendor)
        try:
            rule = Rejection(
                vendor,
                field,
                value,
                pattern,
                object_type,
                endpoint,
                method.upper(),
                message,
                times,
            )
        except (ValueError, re.error) as error:
            raise ValidationError("rejection", str(error)) from None
        return self.rejections.add(rule)

    def clear_rejections(self, vendor: str | None = None) -> None:
        """Remove the vendor's validation rules (every vendor's when ``None``)."""
        self.rejections.clear(vendor)

    def state(self, vendor: str) -> Mapping[str, Any]:
        return self.emulator(vendor).state()

    def token(self, vendor: str, ttl: float = 3600.0, *, subject: str = "") -> str:
        """A live access token the vendor's emulator accepts."""
        self.emulator(vendor)
        return self.env.tokens.issue(vendor, ttl=ttl, subject=subject)

    def refresh_token(self, vendor: str, *, subject: str = "") -> str:
        """A refresh token the vendor's OAuth token endpoint exchanges for access tokens."""
        self.emulator(vendor)
        return self.env.tokens.issue_refresh(vendor, subject=subject)

    def expire_tokens(self, vendor: str) -> None:
        """Every access token of the vendor stops working now (refresh tokens still work)."""
        self.emulator(vendor)
        self.env.tokens.expire(vendor)


async def _json_body(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as error:
        raise ValidationError("body", f"not JSON: {error}") from None


def admin_app(controls: Controls, vendor: str) -> Starlette:
    """The ``/__sandbox__/`` endpoints of one vendor's port."""

    async def index(request: Request) -> Response:
        paths = sorted({route.path for route in app.routes if isinstance(route, Route)})
        return JSONResponse({"vendor": vendor, "endpoints": paths})

    async def calls(request: Request) -> Response:
        statuses: dict[tuple[str, str], Counter[int]] = {}
        for call in controls.calls.calls(vendor):
            statuses.setdefault((call.method, call.endpoint), Counter())[call.status] += 1
        rows = [
            {
                "method": method,
                "endpoint": endpoint,
                "count": sum(by_status.values()),
                "status": {str(code): n for code, n in sorted(by_status.items())},
            }
            for (method, endpoint), by_status in sorted(statuses.items())
        ]
        total = sum(sum(c.values()) for c in statuses.values())
        return JSONResponse({"vendor": vendor, "total": total, "calls": rows})

    async def reset_calls(request: Request) -> Response:
        controls.calls.reset()
        return Response(status_code=204)

    async def add_fault(request: Request) -> Response:
        rule = fault_rule(await _json_body(request), vendor=vendor)
        controls.set_faults(rule.vendor, rule.plan, endpoint=rule.endpoint, method=rule.method)
        return JSONResponse(rule.to_dict(), status_code=201)

    async def clear_faults(request: Request) -> Response:
        controls.clear_faults(request.query_params.get("vendor", vendor))
        return Response(status_code=204)

    async def list_rejections(request: Request) -> Response:
        rules = controls.rejections.rules(request.query_params.get("vendor", vendor))
        return JSONResponse({"vendor": vendor, "rejections": [r.to_dict() for r in rules]})

    async def add_rejection(request: Request) -> Response:
        rule = rejection_rule(await _json_body(request), vendor=vendor)
        added = controls.reject(
            rule.vendor,
            field=rule.field,
            value=rule.value,
            pattern=rule.pattern,
            object_type=rule.object_type,
            endpoint=rule.endpoint,
            method=rule.method,
            message=rule.message,
            times=rule.times,
        )
        return JSONResponse(added.to_dict(), status_code=201)

    async def clear_rejections(request: Request) -> Response:
        controls.clear_rejections(request.query_params.get("vendor", vendor))
        return Response(status_code=204)

    async def state(request: Request) -> Response:
        return JSONResponse(controls.state(vendor))

    async def issue_tokens(request: Request) -> Response:
        body = await _json_body(request)
        ttl = body.get("ttl", 3600.0) if isinstance(body, Mapping) else 3600.0
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValidationError("ttl", f"{ttl!r} is not a positive number of seconds")
        return JSONResponse(
            {
                "access_token": controls.token(vendor, float(ttl)),
                "refresh_token": controls.refresh_token(vendor),
                "token_type": "Bearer",
                "expires_in": ttl,
            },
            status_code=201,
        )

    async def expire_tokens(request: Request) -> Response:
        controls.expire_tokens(vendor)
        return Response(status_code=204)

    async def error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CrmMeetingsError)
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    prefix = ADMIN_PREFIX
    app = Starlette(
        routes=[
            Route(f"{prefix}/", index, methods=["GET"]),
            Route(f"{prefix}/calls", calls, methods=["GET"]),
            Route(f"{prefix}/calls", reset_calls, methods=["DELETE"]),
            Route(f"{prefix}/faults", add_fault, methods=["POST"]),
            Route(f"{prefix}/faults", clear_faults, methods=["DELETE"]),
            Route(f"{prefix}/rejections", list_rejections, methods=["GET"]),
            Route(f"{prefix}/rejections", add_rejection, methods=["POST"]),
            Route(f"{prefix}/rejections", clear_rejections, methods=["DELETE"]),
            Route(f"{prefix}/state", state, methods=["GET"]),
            Route(f"{prefix}/tokens", issue_tokens, methods=["POST"]),
            Route(f"{prefix}/tokens/expire", expire_tokens, methods=["POST"]),
        ],
        exception_handlers={CrmMeetingsError: error},
    )
    return app
