"""Zoho CRM (REST API v8) in memory: the parts crm-meetings uses, as Zoho documents them.

Sources: Zoho's API reference (https://www.zoho.com/crm/developer/docs/api/v8/) and its
first-party OpenAPI files with examples (https://github.com/zoho/crm-oas, ``v8.0/``).

Served on one port, like Zoho's two hosts folded together (the paths differ):

- accounts server: ``POST /oauth/v2/token`` (``grant_type=refresh_token``); a bad refresh
  token answers HTTP 200 with ``{"error": "invalid_code"}``, as Zoho Accounts does;
- ``/crm/v8/{module}``: GET (``fields`` required, ``page``/``per_page`` ≤ 200 up to 2,000
  records, ``page_token`` beyond, ``ids``, ``sort_by``/``sort_order``, ``If-Modified-Since``
  → 304 when nothing changed, 204 when empty), POST insert / PUT update / DELETE ``ids``
  (≤ 100 records per call, per-record ``{code, details, message, status}``; 201/200 when
  all succeed, 207 when mixed, 400 when all fail), ``/{id}`` GET/PUT/DELETE,
  ``/upsert`` with ``duplicate_check_fields`` (not for Events: Zoho lists no upsert for
  activities), ``/deleted`` (recycle-bin entries, ``If-Modified-Since``);
- ``POST /crm/v8/coql``: a small subset of COQL (``select … from … where a = 'x' or b in
  (…) limit n offset m``; ``in`` takes ≤ 50 values);
- metadata: ``users?type=CurrentUser|ActiveUsers``, ``org``, ``settings/fields?module=``,
  ``settings/layouts?module=``.

Modules: Events (with the custom fields crm-meetings' setup step adds), Accounts, Contacts,
Deals, Leads from the seed, and the custom module ``CRM_Meeting_Sessions`` where history
lands (see :mod:`crm_meetings.connectors.zoho.mapping`). Ids are Zoho-style 19-digit
numeric strings. ``Authorization: Zoho-oauthtoken <token>`` is checked against
``env.tokens``: no header → 401 ``AUTHENTICATION_FAILURE``, a bad or expired token → 401
``INVALID_TOKEN``. Every API answer carries ``X-RATELIMIT-LIMIT/-REMAINING/-RESET``.
Set :attr:`ZohoEmulator.reject_subject` to make Events with that title fail validation, or
add a rule to the sandbox's :class:`~crm_meetings.sandbox.base.Rejections` (any module and
field): the record fails with ``INVALID_DATA`` naming the field in ``details.api_name``.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_meetings.sandbox.base import FaultKind, SandboxEnv
from crm_meetings.sandbox.seed import SeedData

__all__ = ["API", "HISTORY_MODULE", "ZohoEmulator"]

API: Final = "/crm/v8"
HISTORY_MODULE: Final = "CRM_Meeting_Sessions"
WRITE_LIMIT: Final = 100
PAGE_LIMIT: Final = 200
DISCRETE_LIMIT: Final = 2000
TOKENS_KEPT: Final = 10_000  # page tokens remembered (Zoho: valid 24 h); the oldest go first
COQL_IN_LIMIT: Final = 50
DAILY_CREDITS: Final = 25_000
_ID_BASE: Final = 5_725_767_000_000_000_000
ORG_ID: Final = "5725767000000000001"  # GET /org -> org[0].id

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Field:
    api_name: str
    data_type: str = "text"  # text | textarea | datetime | integer | lookup | ownerlookup | …
    mandatory: bool = False
    unique: bool = False
    custom: bool = False
    length: int = 255


def _fields(*specs: _Field) -> tuple[_Field, ...]:
    system = (
        _Field("id", "bigint"),
        _Field("Owner", "ownerlookup"),
        _Field("Created_Time", "datetime"),
        _Field("Modified_Time", "datetime"),
        _Field("Created_By", "ownerlookup"),
        _Field("Modified_By", "ownerlookup"),
        _Field("Layout", "layout"),
    )
    return system + specs


_MODULE_FIELDS: Final[Mapping[str, tuple[_Field, ...]]] = {
    "Events": _fields(
        _Field("Event_Title", mandatory=True),
        _Field("Start_DateTime", "datetime", mandatory=True),
        _Field("End_DateTime", "datetime", mandatory=True),
        _Field("All_day", "boolean"),
        _Field("Venue"),
        _Field("Description", "textarea", length=32_000),
        _Field("Participants", "participants"),
        _Field("What_Id", "lookup"),
        _Field("Who_Id", "lookup"),
        _Field("CRM_Meetings_Id", unique=True, custom=True),
        _Field("CRM_Meetings_UID", custom=True),
        _Field("CRM_Meetings_Sequence", "integer", custom=True),
        _Field("CRM_Meetings_Status", "picklist", custom=True),
        _Field("Join_URL", "website", custom=True, length=2048),
        _Field("Provider", custom=True),
        _Field("Provider_Meeting_Id", custom=True),
        _Field("Time_Zone", custom=True),
    ),
    "Accounts": _fields(_Field("Account_Name", mandatory=True), _Field("Website")),
    "Contacts": _fields(
        _Field("First_Name"),
        _Field("Last_Name", mandatory=True),
        _Field("Full_Name"),
        _Field("Email", "email"),
        _Field("Account_Name", "lookup"),
    ),
    "Deals": _fields(
        _Field("Deal_Name", mandatory=True), _Field("Stage"), _Field("Account_Name", "lookup")
    ),
    "Leads": _fields(
        _Field("First_Name"),
        _Field("Last_Name", mandatory=True),
        _Field("Full_Name"),
        _Field("Email", "email"),
        _Field("Company"),
    ),
    # Notes API (Create Notes, Get Notes of a record): one parent record per note
    "Notes": _fields(
        _Field("Note_Title", length=120),
        _Field("Note_Content", "textarea", mandatory=True, length=32_000),
        _Field("Parent_Id", "parent", mandatory=True),
    ),
    HISTORY_MODULE: _fields(
        _Field("Name", mandatory=True),
        _Field("Provider_Session_Id", mandatory=True, unique=True, custom=True),
        _Field("Event_Id", custom=True),
        _Field("Provider", custom=True),
        _Field("Provider_Meeting_Id", custom=True),
        _Field("Session_Start", "datetime", custom=True),
        _Field("Session_End", "datetime", custom=True),
        _Field("Duration_Minutes", "integer", custom=True),
        _Field("Participant_Count", "integer", custom=True),
        _Field("History_Hash", custom=True),
        _Field("Session_Participants", "subform", custom=True),
    ),
}
_NAME_FIELD: Final = {
    "Accounts": "Account_Name",
    "Contacts": "Full_Name",
    "Deals": "Deal_Name",
    "Leads": "Full_Name",
    "Events": "Event_Title",
    "Notes": "Note_Title",
    HISTORY_MODULE: "Name",
}
_NOTE_PARENTS: Final = frozenset({"Accounts", "Contacts", "Deals", "Leads", "Events"})
_UPSERT_MODULES: Final = frozenset({"Accounts", "Contacts", "Deals", "Leads", HISTORY_MODULE})
_WHAT_MODULES: Final = frozenset({"Accounts", "Deals", "Leads"})
_PARTICIPANT_TYPES: Final = {"contact": "Contacts", "lead": "Leads"}


def _error(code: str, message: str, details: Mapping[str, Any] | None = None) -> Json:
    return {"code": code, "details": dict(details or {}), "message": message, "status": "error"}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class _Reject(Exception):
    """One record's failure inside a batch: becomes its ``{code, details, …}`` entry."""

    def __init__(self, body: Json) -> None:
        super().__init__(body["message"])
        self.body = body


def _unique_key(value: Any) -> Any:
    """A unique field's index key: Zoho's unique fields are case-insensitive (the field
    metadata says ``"casesensitive": "false"``)."""
    return value.casefold() if isinstance(value, str) else value


@dataclass
class _Store:
    records: dict[str, dict[str, Json]] = field(
        default_factory=lambda: {name: {} for name in _MODULE_FIELDS}
    )
    deleted: dict[str, list[Json]] = field(
        default_factory=lambda: {name: [] for name in _MODULE_FIELDS}
    )
    users: list[Json] = field(default_factory=list)
    tokens: dict[str, tuple[str, tuple[Any, ...], int]] = field(default_factory=dict)
    version: int = 0  # bumped by every insert, update and delete (the sort cache's key)
    # (module, sort_by, descending) -> (version, records in that order)
    orders: dict[tuple[str, str, bool], tuple[int, list[Json]]] = field(default_factory=dict)
    # (module, unique field) -> value -> record id: the duplicate check without a scan
    unique: dict[tuple[str, str], dict[Any, str]] = field(
        default_factory=lambda: {
            (module, f.api_name): {}
            for module, fields in _MODULE_FIELDS.items()
            for f in fields
            if f.unique
        }
    )

    def index(self, module: str, record: Json, values: Json) -> None:
        """Point the unique-field index at ``record`` for the unique fields ``values`` sets."""
        for name, value in values.items():
            held = self.unique.get((module, name))
            if held is None:
                continue
            old = record.get(name)
            if old not in (None, "") and held.get(_unique_key(old)) == record["id"]:
                del held[_unique_key(old)]
            if value not in (None, ""):
                held[_unique_key(value)] = record["id"]

    def unindex(self, module: str, record: Json) -> None:
        """Drop a deleted record from the unique-field index."""
        self.index(module, record, {name: None for (m, name) in self.unique if m == module})

    def ordered(self, module: str, sort_by: str, descending: bool) -> list[Json]:
        """The module's records sorted as a list request asks, sorted once per change."""
        cached = self.orders.get((module, sort_by, descending))
        if cached is not None and cached[0] == self.version:
            return cached[1]

        def key(r: Json) -> Any:
            return (_parse_time(r[sort_by]), int(r["id"])) if sort_by != "id" else int(r["id"])

        records = sorted(self.records[module].values(), key=key, reverse=descending)
        self.orders[(module, sort_by, descending)] = (self.version, records)
        return records

    def remember(self, token: str, entry: tuple[str, tuple[Any, ...], int]) -> None:
        """Keep a page token (the oldest are forgotten past :data:`TOKENS_KEPT`)."""
        self.tokens[token] = entry
        while len(self.tokens) > TOKENS_KEPT:
            del self.tokens[next(iter(self.tokens))]


class ZohoEmulator:
    """Zoho CRM v8 for the sandbox (``name = "zoho"``)."""

    name = "zoho"

    def __init__(self) -> None:
        self.reject_subject: str | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._store = _Store()
        self._env: SandboxEnv | None = None
        self._add_user("Sandbox Admin", "admin@sandbox.example.com", "UTC")

    # --- VendorEmulator ---------------------------------------------------------------

    def build_app(self, env: SandboxEnv) -> Starlette:
        self._env = env
        routes = [
            Route("/oauth/v2/token", self._token, methods=["POST"]),
            Route(f"{API}/users", self._api(self._users), methods=["GET"]),
            Route(f"{API}/org", self._api(self._org), methods=["GET"]),
            Route(f"{API}/settings/fields", self._api(self._field_meta), methods=["GET"]),
            Route(f"{API}/settings/layouts", self._api(self._layouts), methods=["GET"]),
            Route(f"{API}/coql", self._api(self._coql), methods=["POST"]),
            Route(f"{API}/{{module}}/upsert", self._api(self._upsert), methods=["POST"]),
            Route(f"{API}/{{module}}/deleted", self._api(self._deleted), methods=["GET"]),
            Route(
                f"{API}/{{module}}/{{record_id}}/Notes",
                self._api(self._notes_of),
                methods=["GET"],
            ),
            Route(
                f"{API}/{{module}}/{{record_id}}",
                self._api(self._one),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route(
                f"{API}/{{module}}", self._api(self._many), methods=["GET", "POST", "PUT", "DELETE"]
            ),
        ]
        return Starlette(routes=routes)

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        if kind is FaultKind.RATE_LIMITED:
            body = _error(
                "TOO_MANY_REQUESTS",
                "Rate limit exceeded. Please retry after the specified time.",
                {"retry_after": retry_after, "limit": 100, "window": 60},
            )
            headers = {
                "X-RATELIMIT-LIMIT": "100",
                "X-RATELIMIT-REMAINING": "0",
                "X-RATELIMIT-RESET": f"{retry_after:g}",
            }
            return JSONResponse(body, status_code=429, headers=headers)
        if kind is FaultKind.UNAUTHORIZED:
            return JSONResponse(_error("INVALID_TOKEN", "invalid oauth token"), status_code=401)
        return JSONResponse(_error("INTERNAL_ERROR", "Internal Server Error"), status_code=500)

    def load(self, data: Any) -> None:
        if not isinstance(data, SeedData):
            raise TypeError(f"expected SeedData, got {type(data).__name__}")
        with self._lock:
            users = {u.key: self._add_user(u.name, u.email, u.timezone) for u in data.users}
            accounts: dict[str, Json] = {}
            contacts: dict[str, Json] = {}
            for record in data.records:
                account = self._insert("Accounts", {"Account_Name": record.company})
                account["Website"] = record.domain
                first, _, last = record.contact_name.partition(" ")
                contact = self._insert(
                    "Contacts",
                    {
                        "First_Name": first,
                        "Last_Name": last or first,
                        "Email": record.contact_email,
                        "Account_Name": {"id": account["id"]},
                    },
                )
                self._insert(
                    "Deals",
                    {
                        "Deal_Name": f"{record.company} renewal",
                        "Stage": "Qualification",
                        "Account_Name": {"id": account["id"]},
                    },
                )
                accounts[record.key], contacts[record.key] = account, contact
            for meeting in data.meetings:
                zone = ZoneInfo(meeting.timezone)
                contact = contacts[meeting.record]
                self._insert(
                    "Events",
                    {
                        "Event_Title": meeting.subject,
                        "Start_DateTime": _iso(meeting.start.astimezone(zone)),
                        "End_DateTime": _iso(meeting.end.astimezone(zone)),
                        "Owner": {"id": users[meeting.organizer]["id"]},
                        "What_Id": {"id": accounts[meeting.record]["id"]},
                        "$se_module": "Accounts",
                        "Who_Id": {"id": contact["id"]},
                        "Participants": [{"type": "contact", "participant": contact["id"]}],
                        "Join_URL": meeting.join_url,
                        "Provider": meeting.provider,
                        "Provider_Meeting_Id": meeting.provider_meeting_id,
                        "Time_Zone": meeting.timezone,
                    },
                )

    def state(self) -> Mapping[str, Any]:
        with self._lock:
            records = self._store.records
            return copy.deepcopy(
                {
                    "events": sorted(records["Events"].values(), key=lambda r: r["id"]),
                    "history_sessions": sorted(
                        records[HISTORY_MODULE].values(), key=lambda r: r["Provider_Session_Id"]
                    ),
                    "deleted_events": self._store.deleted["Events"],
                    "accounts": list(records["Accounts"].values()),
                    "contacts": list(records["Contacts"].values()),
                    "deals": list(records["Deals"].values()),
                    "notes": sorted(records["Notes"].values(), key=_by_id),
                    "users": self._store.users,
                }
            )

    # --- helpers for tests ------------------------------------------------------------

    def records(self, module: str) -> list[Json]:
        """A copy of every live record of ``module``, by id."""
        with self._lock:
            return copy.deepcopy(sorted(self._store.records[module].values(), key=_by_id))

    # --- plumbing ---------------------------------------------------------------------

    @property
    def env(self) -> SandboxEnv:
        if self._env is None:
            raise RuntimeError("build_app() was not called")
        return self._env

    def _now(self) -> datetime:
        return self.env.clock().replace(microsecond=0)

    def _next_id(self) -> str:
        return str(_ID_BASE + next(self._ids))

    def _add_user(self, name: str, email: str, zone: str) -> Json:
        first, _, last = name.partition(" ")
        user = {
            "id": self._next_id(),
            "full_name": name,
            "first_name": first,
            "last_name": last,
            "email": email,
            "status": "active",
            "confirm": True,
            "time_zone": zone,
            "role": {"name": "CEO", "id": "5725767000000026005"},
            "profile": {"name": "Administrator", "id": "5725767000000026011"},
        }
        self._store.users.append(user)
        return user

    def _current_user(self, token: str) -> Json:
        subject = self.env.tokens.subject(token) or ""
        users = self._store.users
        return next((u for u in users if u["email"] == subject), users[0])

    def _api(self, handler: Callable[[Request, Json], Response]) -> Callable[[Request], Any]:
        """Check ``Zoho-oauthtoken``, run ``handler`` under the lock, add limit headers."""

        async def endpoint(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme != "Zoho-oauthtoken" or not token:
                return JSONResponse(
                    _error("AUTHENTICATION_FAILURE", "Authentication failed"), status_code=401
                )
            if not self.env.tokens.check(self.name, token):
                return JSONResponse(_error("INVALID_TOKEN", "invalid oauth token"), 401)
            body: Json = {}
            if request.method in ("POST", "PUT"):
                try:
                    parsed = json.loads(await request.body() or b"{}")
                except ValueError:
                    return JSONResponse(_error("INVALID_DATA", "body is not valid JSON"), 400)
                if not isinstance(parsed, dict):
                    return JSONResponse(_error("INVALID_DATA", "body must be an object"), 400)
                body = parsed
            with self._lock:
                user = self._current_user(token)
                request.state.user = user
                response = handler(request, body)
            used = self.env.calls.count(self.name) + 1
            response.headers["X-RATELIMIT-LIMIT"] = str(DAILY_CREDITS)
            response.headers["X-RATELIMIT-REMAINING"] = str(max(0, DAILY_CREDITS - used))
            response.headers["X-RATELIMIT-RESET"] = "86400"
            return response

        return endpoint

    # --- accounts server --------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        form = dict(request.query_params)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form.update({k: str(v) for k, v in (await request.form()).items()})
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"})
        if not form.get("client_id") or not form.get("client_secret"):
            return JSONResponse({"error": "invalid_client"})
        access = self.env.tokens.refresh(self.name, form.get("refresh_token", ""))
        if access is None:
            return JSONResponse({"error": "invalid_code"})
        return JSONResponse(
            {
                "access_token": access,
                "api_domain": self.env.base_urls.get(self.name, ""),
                "token_type": "Bearer",
                "expires_in": 3600,
            }
        )

    # --- metadata ---------------------------------------------------------------------

    def _users(self, request: Request, _: Json) -> Response:
        kind = request.query_params.get("type", "AllUsers")
        users = (
            [request.state.user]
            if kind == "CurrentUser"
            else [u for u in self._store.users if kind != "ActiveUsers" or u["status"] == "active"]
        )
        info = {"per_page": PAGE_LIMIT, "count": len(users), "page": 1, "more_records": False}
        return JSONResponse({"users": users, "info": info})

    def _org(self, request: Request, _: Json) -> Response:
        org = {
            "id": ORG_ID,
            "company_name": "crm-meetings sandbox",
            "primary_email": self._store.users[0]["email"],
            "time_zone": "UTC",
            "country_code": "US",
            "domain_name": "org5725767",
            "zgid": "700000001",
            "type": "production",
        }
        return JSONResponse({"org": [org]})

    def _module_param(self, request: Request) -> str | Response:
        module = request.query_params.get("module")
        if not module:
            return JSONResponse(
                _error(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param_name": "module"},
                ),
                400,
            )
        if module not in _MODULE_FIELDS:
            return JSONResponse(
                _error(
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    {"param_name": "module"},
                ),
                400,
            )
        return module

    def _field_meta(self, request: Request, _: Json) -> Response:
        module = self._module_param(request)
        if isinstance(module, Response):
            return module
        fields = [
            {
                "api_name": f.api_name,
                "field_label": f.api_name.replace("_", " "),
                "data_type": f.data_type,
                "id": str(_ID_BASE + 900_000 + n),
                "system_mandatory": f.mandatory,
                "custom_field": f.custom,
                "length": f.length,
                "unique": {"casesensitive": "false"} if f.unique else {},
                "read_only": f.api_name in ("id", "Created_Time", "Modified_Time"),
            }
            for n, f in enumerate(_MODULE_FIELDS[module])
        ]
        return JSONResponse({"fields": fields})

    def _layouts(self, request: Request, _: Json) -> Response:
        module = self._module_param(request)
        if isinstance(module, Response):
            return module
        layouts = [
            {
                "id": _layout_id("Standard"),
                "name": "Standard",
                "status": "active",
                "visible": True,
                "api_name": "Standard",
            },
        ]
        if module == "Events":
            layouts.append(
                {
                    "id": _layout_id("Customer Meeting"),
                    "name": "Customer Meeting",
                    "status": "active",
                    "visible": True,
                    "api_name": "Customer_Meeting",
                }
            )
        return JSONResponse({"layouts": layouts})

    # --- records ----------------------------------------------------------------------

    def _module(self, request: Request) -> str | Response:
        module = request.path_params["module"]
        if module not in _MODULE_FIELDS:
            return JSONResponse(
                _error(
                    "INVALID_MODULE",
                    "the module name given seems to be invalid",
                    {"resource_path_index": 0},
                ),
                400,
            )
        return str(module)

    def _many(self, request: Request, body: Json) -> Response:
        module = self._module(request)
        if isinstance(module, Response):
            return module
        if request.method == "GET":
            return self._list(request, module)
        if request.method == "DELETE":
            ids = [i for i in request.query_params.get("ids", "").split(",") if i]
            return self._delete(module, ids)
        rows = body.get("data")
        if not isinstance(rows, list) or not rows:
            return JSONResponse(
                _error(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    {"api_name": "data", "json_path": "$.data"},
                ),
                400,
            )
        if len(rows) > WRITE_LIMIT:
            return JSONResponse(
                _error(
                    "LIMIT_EXCEEDED",
                    "limit exceeded",
                    {"limit": WRITE_LIMIT, "api_name": "data", "json_path": "$.data"},
                ),
                400,
            )
        user = request.state.user
        if request.method == "POST":
            return self._batch(rows, lambda i, row: self._create(module, i, row, user), 201)
        return self._batch(rows, lambda i, row: self._update(module, i, row, user), 200)

    def _one(self, request: Request, body: Json) -> Response:
        module = self._module(request)
        if isinstance(module, Response):
            return module
        record_id = request.path_params["record_id"]
        if request.method == "DELETE":
            return self._delete(module, [record_id])
        if request.method == "PUT":
            rows = body.get("data")
            if not isinstance(rows, list) or len(rows) != 1:
                return JSONResponse(
                    _error(
                        "INVALID_DATA",
                        "give exactly one record",
                        {"api_name": "data", "json_path": "$.data"},
                    ),
                    400,
                )
            row = {**rows[0], "id": record_id}
            user = request.state.user
            return self._batch([row], lambda i, r: self._update(module, i, r, user), 200)
        record = self._store.records[module].get(record_id)
        if record is None:
            return Response(status_code=204)
        return JSONResponse({"data": [self._project(record, request)]})

    def _notes_of(self, request: Request, _: Json) -> Response:
        """``GET /{module}/{id}/Notes``: the record's notes, newest first (204: none)."""
        module = self._module(request)
        if isinstance(module, Response):
            return module
        record_id = request.path_params["record_id"]
        if record_id not in self._store.records[module]:
            return JSONResponse(
                _error("INVALID_DATA", "the related id given seems to be invalid", {}), 400
            )
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        page, per_page = paging
        notes = [
            n
            for n in self._store.records["Notes"].values()
            if n["Parent_Id"]["id"] == record_id and n["Parent_Id"]["module"]["api_name"] == module
        ]
        notes.sort(key=lambda n: (n["Created_Time"], _by_id(n)), reverse=True)
        chunk = notes[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response(status_code=204)
        more = len(notes) > page * per_page
        info = {"per_page": per_page, "count": len(chunk), "page": page, "more_records": more}
        return JSONResponse({"data": [self._project(n, request) for n in chunk], "info": info})

    def _upsert(self, request: Request, body: Json) -> Response:
        module = self._module(request)
        if isinstance(module, Response):
            return module
        if module not in _UPSERT_MODULES:
            return JSONResponse(
                _error(
                    "NOT_SUPPORTED",
                    f"upsert is not supported for {module}",
                    {"resource_path_index": 0},
                ),
                400,
            )
        rows = body.get("data")
        if not isinstance(rows, list) or not rows or len(rows) > WRITE_LIMIT:
            return JSONResponse(
                _error(
                    "LIMIT_EXCEEDED",
                    "limit exceeded",
                    {"limit": WRITE_LIMIT, "api_name": "data", "json_path": "$.data"},
                ),
                400,
            )
        unique = [f.api_name for f in _MODULE_FIELDS[module] if f.unique]
        check = body.get("duplicate_check_fields") or unique
        if not isinstance(check, list) or any(name not in unique for name in check):
            return JSONResponse(
                _error(
                    "INVALID_DATA",
                    "invalid data",
                    {"api_name": "duplicate_check_fields", "supported_values": unique},
                ),
                400,
            )
        user = request.state.user

        def one(index: int, row: Json) -> Json:
            if not isinstance(row, dict):
                raise _Reject(
                    _error("INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"})
                )
            for name in check:
                match = self._find(module, name, row.get(name))
                if match is not None:
                    result = self._update(module, index, {**row, "id": match["id"]}, user)
                    return {"duplicate_field": name, "action": "update", **result}
            result = self._create(module, index, row, user)
            return {"duplicate_field": None, "action": "insert", **result}

        return self._batch(rows, one, 200)

    def _batch(
        self, rows: list[Any], write: Callable[[int, Json], Json], ok_status: int
    ) -> Response:
        results: list[Json] = []
        for index, row in enumerate(rows):
            try:
                if not isinstance(row, dict):
                    raise _Reject(
                        _error("INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"})
                    )
                results.append(write(index, row))
            except _Reject as rejected:
                results.append(rejected.body)
        return self._batch_response(results, ok_status)

    def _success(self, record: Json, message: str) -> Json:
        def brief(user: Json) -> Json:
            return {"name": user["name"], "id": user["id"]}

        details = {
            "Modified_Time": record["Modified_Time"],
            "Modified_By": brief(record["Modified_By"]),
            "Created_Time": record["Created_Time"],
            "id": record["id"],
            "Created_By": brief(record["Created_By"]),
        }
        return {"code": "SUCCESS", "details": details, "message": message, "status": "success"}

    def _create(self, module: str, index: int, row: Json, user: Json) -> Json:
        values = self._validate(module, index, row, creating=True)
        record = self._insert(module, values, user)
        return self._success(record, "record added")

    def _update(self, module: str, index: int, row: Json, user: Json) -> Json:
        record_id = str(row.get("id", ""))
        record = self._store.records[module].get(record_id)
        if record is None:
            raise _Reject(
                _error(
                    "INVALID_DATA",
                    "the related id given seems to be invalid",
                    {"api_name": "id", "json_path": f"$.data[{index}].id"},
                )
            )
        values = self._validate(module, index, row, creating=False, current=record)
        self._apply(module, record, values, user)
        return self._success(record, "record updated")

    def _insert(self, module: str, values: Json, user: Json | None = None) -> Json:
        author = user or self._store.users[0]
        now = _iso(self._now())
        who = {"name": author["full_name"], "id": author["id"], "email": author["email"]}
        record: Json = {
            "id": self._next_id(),
            "Owner": who,
            "Created_Time": now,
            "Modified_Time": now,
            "Created_By": who,
            "Modified_By": who,
        }
        if module == "Events":
            record.update(Participants=[], What_Id=None, Who_Id=None)
            record["$se_module"] = None
        self._apply(module, record, values, author, touch=False)
        self._store.records[module][record["id"]] = record
        self._store.version += 1
        return record

    def _apply(
        self, module: str, record: Json, values: Json, user: Json, *, touch: bool = True
    ) -> None:
        lookups = {f.api_name for f in _MODULE_FIELDS[module] if f.data_type == "lookup"}
        self._store.index(module, record, values)
        for name, value in values.items():
            if name == "Participants":
                record[name] = [self._participant(p) for p in value]
            elif name == "Session_Participants":
                record[name] = [{**row, "id": row.get("id") or self._next_id()} for row in value]
            elif name == "Owner":
                owner = next(u for u in self._store.users if u["id"] == value["id"])
                record[name] = {
                    "name": owner["full_name"],
                    "id": owner["id"],
                    "email": owner["email"],
                }
            elif name in lookups and value is not None:
                target_module = {"Who_Id": "Contacts", "Account_Name": "Accounts"}.get(name) or str(
                    values.get("$se_module") or record.get("$se_module")
                )
                target = self._store.records[target_module][value["id"]]
                record[name] = {"name": target[_NAME_FIELD[target_module]], "id": value["id"]}
            elif name == "Layout" and value is not None:
                record[name] = {"id": value["id"], "name": _layout_name(value["id"])}
            else:
                record[name] = value
        if module in ("Contacts", "Leads"):
            record["Full_Name"] = " ".join(
                p for p in (record.get("First_Name"), record.get("Last_Name")) if p
            )
        if touch:
            who = {"name": user["full_name"], "id": user["id"], "email": user["email"]}
            record["Modified_Time"] = _iso(self._now())
            record["Modified_By"] = who
            self._store.version += 1

    def _participant(self, given: Json) -> Json:
        kind = given["type"]
        entry: Json = {
            "id": given.get("id") or self._next_id(),
            "type": kind,
            "participant": given["participant"],
            "invited": bool(given.get("invited", False)),
            "status": given.get("status") or "not_known",
        }
        if kind in _PARTICIPANT_TYPES:
            target = self._store.records[_PARTICIPANT_TYPES[kind]][given["participant"]]
            entry.update(name=target["Full_Name"], Email=target.get("Email"))
        elif kind == "user":
            user = next(u for u in self._store.users if u["id"] == given["participant"])
            entry.update(name=user["full_name"], Email=user["email"])
        else:
            entry.update(name=given.get("name") or given["participant"], Email=given["participant"])
        return entry

    def _validate(
        self, module: str, index: int, row: Json, *, creating: bool, current: Json | None = None
    ) -> Json:
        """The writable values of ``row``, or a :class:`_Reject` naming the field."""
        fields = {f.api_name: f for f in _MODULE_FIELDS[module]}
        path = f"$.data[{index}]"

        def reject(code: str, message: str, name: str, **extra: Any) -> _Reject:
            return _Reject(
                _error(code, message, {"api_name": name, "json_path": f"{path}.{name}", **extra})
            )

        values: Json = {}
        for name, value in row.items():
            spec = fields.get(name)
            if (
                name in ("id", "$se_module")
                or spec is None
                or name in ("Created_Time", "Modified_Time", "Created_By", "Modified_By")
            ):
                continue
            if spec.data_type == "datetime" and value is not None and _parse_time(value) is None:
                raise reject("INVALID_DATA", "invalid data", name, expected_data_type="datetime")
            if (
                spec.data_type == "integer"
                and value is not None
                and (isinstance(value, bool) or not isinstance(value, int))
            ):
                raise reject("INVALID_DATA", "invalid data", name, expected_data_type="integer")
            if spec.data_type in ("text", "textarea", "website", "email", "picklist"):
                if value is not None and not isinstance(value, str):
                    raise reject("INVALID_DATA", "invalid data", name, expected_data_type="text")
                if isinstance(value, str) and len(value) > spec.length:
                    raise reject("INVALID_DATA", "invalid data", name, maximum_length=spec.length)
            if spec.unique and value not in (None, ""):
                duplicate = self._find(module, name, value)
                if duplicate is not None and (current is None or duplicate["id"] != current["id"]):
                    raise _Reject(
                        _error(
                            "DUPLICATE_DATA",
                            "duplicate data",
                            {
                                "api_name": name,
                                "json_path": f"{path}.{name}",
                                "id": duplicate["id"],
                                "more_records": False,
                                "duplicate_record": {
                                    "id": duplicate["id"],
                                    "Owner": duplicate["Owner"],
                                },
                            },
                        )
                    )
            values[name] = self._reference(module, name, value, row, reject)
        merged = {**(current or {}), **values}
        for name, spec in fields.items():
            if spec.mandatory and merged.get(name) in (None, "") and (creating or name in values):
                raise reject("MANDATORY_NOT_FOUND", "required field not found", name)
        if self._env is not None:  # the sandbox's validation rules, on the record as saved
            for name, rule in self._env.rejections.check(self.name, module, merged):
                raise reject("INVALID_DATA", rule.message or "invalid data", name)
        if module == "Events":
            if self.reject_subject is not None and merged.get("Event_Title") == self.reject_subject:
                raise reject("INVALID_DATA", "invalid data", "Event_Title")
            start, end = _parse_time(merged["Start_DateTime"]), _parse_time(merged["End_DateTime"])
            if start is not None and end is not None and end < start:
                raise reject(
                    "INVALID_DATA", "End DateTime is before Start DateTime", "End_DateTime"
                )
            if "What_Id" in values or "$se_module" in row:
                module_name = row.get("$se_module") or merged.get("$se_module")
                if values.get("What_Id") is not None and module_name not in _WHAT_MODULES:
                    raise reject(
                        "INVALID_DATA",
                        "invalid data",
                        "$se_module",
                        supported_values=sorted(_WHAT_MODULES),
                    )
                values["$se_module"] = module_name if values.get("What_Id") else None
        return values

    def _reference(
        self, module: str, name: str, value: Any, row: Json, reject: Callable[..., _Reject]
    ) -> Any:
        """Normalise lookups to ``{"id": …}`` and check that their targets exist."""
        lookups = {f.api_name for f in _MODULE_FIELDS[module] if f.data_type == "lookup"}
        if name in lookups or name in ("Owner", "Layout"):
            if value is None:
                return None
            ref = value if isinstance(value, dict) else {"id": value}
            ref_id = str(ref.get("id", ""))
            if name == "Owner":
                exists = any(u["id"] == ref_id for u in self._store.users)
            elif name == "Layout":
                exists = _layout_name(ref_id) is not None
            else:
                target = (
                    row.get("$se_module")
                    if name == "What_Id"
                    else "Contacts"
                    if name == "Who_Id"
                    else "Accounts"
                )
                exists = target in self._store.records and ref_id in self._store.records[target]
            if not exists:
                raise reject("INVALID_DATA", "the related id given seems to be invalid", name)
            return {"id": ref_id}
        if name == "Participants":
            if not isinstance(value, list):
                raise reject("INVALID_DATA", "invalid data", name, expected_data_type="jsonarray")
            for n, given in enumerate(value):
                kind = given.get("type") if isinstance(given, dict) else None
                target = given.get("participant") if isinstance(given, dict) else None
                valid = isinstance(target, str) and (
                    (
                        kind in _PARTICIPANT_TYPES
                        and target in self._store.records[_PARTICIPANT_TYPES[kind]]
                    )
                    or (kind == "user" and any(u["id"] == target for u in self._store.users))
                    or (kind == "email" and "@" in target)
                )
                if not valid:
                    raise reject("INVALID_DATA", "invalid data", f"{name}[{n}].participant")
            return value
        if name == "Parent_Id":
            parent = value if isinstance(value, dict) else {}
            kind = str((parent.get("module") or {}).get("api_name"))
            found = kind in _NOTE_PARENTS and str(parent.get("id")) in self._store.records[kind]
            if not found:
                raise reject("INVALID_DATA", "the related id given seems to be invalid", name)
            target = self._store.records[kind][str(parent["id"])]
            module_id = str(_ID_BASE + 2000 + sorted(_MODULE_FIELDS).index(kind))
            return {
                "module": {"api_name": kind, "id": module_id},
                "name": target.get(_NAME_FIELD[kind]),
                "id": str(parent["id"]),
            }
        if name == "Session_Participants" and not isinstance(value, list):
            raise reject("INVALID_DATA", "invalid data", name, expected_data_type="subform")
        return value

    def _find(self, module: str, name: str, value: Any) -> Json | None:
        """The record whose unique field ``name`` holds ``value`` (from the index, not a scan)."""
        if value in (None, "") or isinstance(value, (dict, list)):
            return None  # nothing to match; the write's own validation rejects the shape
        record_id = self._store.unique[(module, name)].get(_unique_key(value))
        return None if record_id is None else self._store.records[module].get(record_id)

    def _delete(self, module: str, ids: list[str]) -> Response:
        if not ids:
            return JSONResponse(
                _error(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param_name": "ids"},
                ),
                400,
            )
        if len(ids) > WRITE_LIMIT:
            return JSONResponse(
                _error(
                    "LIMIT_EXCEEDED", "limit exceeded", {"limit": WRITE_LIMIT, "param_name": "ids"}
                ),
                400,
            )
        results: list[Json] = []
        for record_id in ids:
            record = self._store.records[module].pop(record_id, None)
            self._store.version += 1
            if record is not None:
                self._store.unindex(module, record)
            if record is None:
                results.append(
                    {
                        "status": "error",
                        "code": "INVALID_DATA",
                        "message": "record not deleted",
                        "details": {"id": record_id},
                    }
                )
                continue
            self._store.deleted[module].append(
                {
                    "deleted_by": {
                        "name": record["Modified_By"]["name"],
                        "id": record["Modified_By"]["id"],
                    },
                    "id": record_id,
                    "display_name": record.get(_NAME_FIELD[module]),
                    "type": "recycle",
                    "created_by": {
                        "name": record["Created_By"]["name"],
                        "id": record["Created_By"]["id"],
                    },
                    "deleted_time": _iso(self._now()),
                }
            )
            results.append(
                {
                    "status": "success",
                    "code": "SUCCESS",
                    "message": "record deleted",
                    "details": {"id": record_id},
                }
            )
        return self._batch_response(results, 200)

    @staticmethod
    def _batch_response(results: list[Json], ok_status: int) -> Response:
        failed = sum(1 for r in results if r["status"] == "error")
        status = ok_status if not failed else 400 if failed == len(results) else 207
        return JSONResponse({"data": results}, status_code=status)

    # --- reads ------------------------------------------------------------------------

    def _project(self, record: Json, request: Request) -> Json:
        wanted = request.query_params.get("fields")
        if not wanted:
            return copy.deepcopy(record)
        names = {"id", *wanted.split(",")}
        if "What_Id" in names:
            names.add("$se_module")
        return copy.deepcopy({k: v for k, v in record.items() if k in names})

    def _since(self, request: Request) -> datetime | Response | None:
        header = request.headers.get("if-modified-since")
        if header is None:
            return None
        since = _parse_time(header)
        if since is None:
            return JSONResponse(
                _error("INVALID_DATA", "invalid data", {"param_name": "If-Modified-Since"}), 400
            )
        return since

    def _paging(self, request: Request) -> tuple[int, int] | Response:
        try:
            page = int(request.query_params.get("page", "1"))
            per_page = int(request.query_params.get("per_page", str(PAGE_LIMIT)))
        except ValueError:
            return JSONResponse(_error("INVALID_DATA", "invalid data", {"param_name": "page"}), 400)
        if page < 1 or not 1 <= per_page <= PAGE_LIMIT:
            name = "page" if page < 1 else "per_page"
            return JSONResponse(_error("INVALID_DATA", "invalid data", {"param_name": name}), 400)
        return page, per_page

    def _list(self, request: Request, module: str) -> Response:
        params = request.query_params
        if not params.get("fields"):
            return JSONResponse(
                _error(
                    "REQUIRED_PARAM_MISSING",
                    "One of the expected parameter is missing",
                    {"param_name": "fields"},
                ),
                400,
            )
        if len(params["fields"].split(",")) > 50:
            return JSONResponse(
                _error("LIMIT_EXCEEDED", "limit exceeded", {"limit": 50, "param_name": "fields"}),
                400,
            )
        since = self._since(request)
        if isinstance(since, Response):
            return since
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        sort_by = params.get("sort_by", "id")
        sort_order = params.get("sort_order", "desc")
        if sort_by not in ("id", "Created_Time", "Modified_Time") or sort_order not in (
            "asc",
            "desc",
        ):
            return JSONResponse(
                _error(
                    "INVALID_DATA",
                    "invalid data",
                    {
                        "param_name": "sort_by",
                        "supported_values": ["id", "Created_Time", "Modified_Time"],
                    },
                ),
                400,
            )
        # sorted once per change of the module; a request only filters (when asked) and slices
        records = self._store.ordered(module, sort_by, sort_order == "desc")
        if params.get("ids"):
            wanted = set(params["ids"].split(","))
            records = [r for r in records if r["id"] in wanted]
        if since is not None:
            records = [r for r in records if _after(r["Modified_Time"], since)]
            if not records:
                return Response(status_code=304)
        signature = (module, params["fields"], sort_by, sort_order, params.get("ids"), since)
        token = params.get("page_token")
        page, per_page = paging
        if token:
            remembered = self._store.tokens.get(token)
            if remembered is None or remembered[1] != signature:
                return JSONResponse(
                    _error("INVALID_DATA", "invalid data", {"param_name": "page_token"}), 400
                )
            start = remembered[2]
        else:
            start = (page - 1) * per_page
            if start + per_page > DISCRETE_LIMIT:
                return JSONResponse(
                    _error(
                        "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                        "You can only get the first 2000 records without using page_token param",
                        {"limit": DISCRETE_LIMIT},
                    ),
                    400,
                )
        chunk = records[start : start + per_page]
        if not chunk:
            return Response(status_code=204)
        more = start + per_page < len(records)
        next_token = None
        if more:
            next_token = f"{next(self._ids):x}{start + per_page:x}"
            self._store.remember(next_token, (next_token, signature, start + per_page))
        info = {
            "call": False,
            "per_page": per_page,
            "next_page_token": next_token,
            "count": len(chunk),
            "sort_by": sort_by,
            "page": page if not token else start // per_page + 1,
            "page_token_expiry": _iso(self._now() + timedelta(days=1)) if next_token else None,
            "sort_order": sort_order,
            "email": False,
            "more_records": more,
            "previous_page_token": token or None,
        }
        return JSONResponse({"data": [self._project(r, request) for r in chunk], "info": info})

    def _deleted(self, request: Request, _: Json) -> Response:
        module = self._module(request)
        if isinstance(module, Response):
            return module
        since = self._since(request)
        if isinstance(since, Response):
            return since
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        kind = request.query_params.get("type", "all")
        entries = [
            e
            for e in self._store.deleted[module]
            if (kind == "all" or e["type"] == kind)
            and (since is None or _after(e["deleted_time"], since))
        ]
        if since is not None and not entries:
            return Response(status_code=304)
        page, per_page = paging
        chunk = entries[(page - 1) * per_page : page * per_page]
        if not chunk:
            return Response(status_code=204)
        info = {
            "per_page": per_page,
            "count": len(chunk),
            "page": page,
            "more_records": page * per_page < len(entries),
        }
        return JSONResponse({"data": copy.deepcopy(chunk), "info": info})

    # --- COQL -------------------------------------------------------------------------

    def _coql(self, request: Request, body: Json) -> Response:
        query = body.get("select_query")
        try:
            if not isinstance(query, str):
                raise _CoqlError("select_query is missing")
            parsed = _parse_coql(query)
        except _CoqlError as error:
            return JSONResponse(
                _error(
                    "SYNTAX_ERROR",
                    f"error occured while parsing the query: {error}",
                    {"clause": "select"},
                ),
                400,
            )
        if parsed.module not in _MODULE_FIELDS:
            return JSONResponse(
                _error(
                    "INVALID_QUERY",
                    "invalid query formed",
                    {"reason": "invalid module", "clause": "from"},
                ),
                400,
            )
        known = {f.api_name for f in _MODULE_FIELDS[parsed.module]}
        for name in (*parsed.fields, *(c[0].split(".")[0] for c in parsed.conditions)):
            if name not in known:
                return JSONResponse(
                    _error(
                        "INVALID_QUERY",
                        "invalid query formed",
                        {"column_name": name, "reason": "column given seems to be invalid"},
                    ),
                    400,
                )
        records = self._store.records[parsed.module].values()
        rows = sorted(filter(parsed.matches, records), key=_by_id)  # sort the matches only
        chunk = rows[parsed.offset : parsed.offset + parsed.limit]
        if not chunk:
            return Response(status_code=204)
        data = [
            {"id": r["id"], **{name: copy.deepcopy(r.get(name)) for name in parsed.fields}}
            for r in chunk
        ]
        more = parsed.offset + parsed.limit < len(rows)
        return JSONResponse({"data": data, "info": {"count": len(data), "more_records": more}})


def _after(value: object, since: datetime) -> bool:
    moment = _parse_time(value)
    return moment is not None and moment > since


def _by_id(record: Json) -> int:
    return int(record["id"])


_LAYOUT_IDS: Final = {"Standard": "5725767000000091055", "Customer Meeting": "5725767000000091057"}


def _layout_id(name: str) -> str:
    return _LAYOUT_IDS[name]


def _layout_name(layout_id: str) -> str | None:
    return next((n for n, i in _LAYOUT_IDS.items() if i == layout_id), None)


class _CoqlError(ValueError):
    pass


_QUERY = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<module>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+order\s+by\s+(?P<order>[\w\s,]+?))?"
    r"(?:\s+limit\s+(?P<limit>\d+)(?:\s*,\s*(?P<count>\d+))?)?"
    r"(?:\s+offset\s+(?P<offset>\d+))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\(?\s*(?P<field>[\w$.]+)\s*(?:(?P<eq>=)\s*'(?P<value>(?:[^']|'')*)'"
    r"|(?P<in>in)\s*\((?P<values>.*)\))\s*\)?$",
    re.IGNORECASE | re.DOTALL,
)
_VALUE = re.compile(r"'((?:[^']|'')*)'")


@functools.lru_cache(maxsize=256)
def _path(name: str) -> tuple[str, ...]:
    """``What_Id.id`` → ``("What_Id", "id")``, split once per name, not once per record."""
    return tuple(name.split("."))


@dataclass(frozen=True, slots=True)
class _Query:
    fields: tuple[str, ...]
    module: str
    conditions: tuple[tuple[str, frozenset[str]], ...]  # (field, accepted values), OR-ed
    limit: int
    offset: int

    def matches(self, record: Json) -> bool:
        if not self.conditions:
            return True
        for name, accepted in self.conditions:
            value: Any = record
            for part in _path(name):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, dict):
                value = value.get("id")
            if value is not None and str(value) in accepted:
                return True
        return False


def _parse_coql(query: str) -> _Query:
    """Parse the COQL subset the connector uses; conditions joined by ``or`` only."""
    match = _QUERY.match(query)
    if match is None:
        raise _CoqlError("expected select … from … [where …] [limit …]")
    fields = tuple(f.strip() for f in match["fields"].split(",") if f.strip())
    if not fields or len(fields) > 50:
        raise _CoqlError("select between 1 and 50 fields")
    conditions: list[tuple[str, frozenset[str]]] = []
    where = match["where"]
    if where:
        for part in re.split(r"\s+or\s+", where.strip(), flags=re.IGNORECASE):
            condition = _CONDITION.match(part.strip())
            if condition is None:
                raise _CoqlError(f"cannot read the condition {part.strip()!r}")
            if condition["eq"]:
                values = [condition["value"]]
            else:
                values = _VALUE.findall(condition["values"])
                if not values or len(values) > COQL_IN_LIMIT:
                    raise _CoqlError(f"in takes 1 to {COQL_IN_LIMIT} values")
            conditions.append((condition["field"], frozenset(v.replace("''", "'") for v in values)))
        if len(conditions) > 25:
            raise _CoqlError("at most 25 criteria")
    if match["count"] is not None:
        offset, limit = int(match["limit"]), int(match["count"])
    else:
        limit = int(match["limit"] or 200)
        offset = int(match["offset"] or 0)
    if not 1 <= limit <= DISCRETE_LIMIT:
        raise _CoqlError(f"limit must be between 1 and {DISCRETE_LIMIT}")
    return _Query(fields, match["module"], tuple(conditions), limit, offset)
