"""The Salesforce REST API emulator: ``/services/data/vNN.N/…`` and the OAuth token endpoint.

Implemented as documented in the REST API Developer Guide (recordings/salesforce/ names
each source): sObject rows (create, retrieve, update, delete, describe, Get Updated /
Get Deleted windows), SOQL ``query``/``queryAll`` with ``nextRecordsUrl`` paging and
``Sforce-Query-Options: batchSize``, sObject Collections (create, update, upsert by
external id, delete; at most 200 records, ``allOrNone``, per-record results), ``limits``,
and ``/services/oauth2/token`` (``grant_type=refresh_token``, and the JWT bearer grant
with RS256 assertions checked against the public keys registered with
:meth:`SalesforceEmulator.register_jwt_key`). Every API response carries
``Sforce-Limit-Info: api-usage=N/M``; errors are Salesforce's JSON lists of
``{message, errorCode, fields}``.

Simplifications: an update that changes no value keeps the record's timestamps; the
Get Updated/Deleted windows are computed from ``SystemModstamp`` in memory.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs

import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm_meetings.sandbox.base import FaultKind, SandboxEnv
from crm_meetings.sandbox.salesforce import soql
from crm_meetings.sandbox.salesforce.schema import (
    OBJECTS,
    Problem,
    SObject,
    coerce,
    describe,
    format_datetime,
    parse_datetime,
    sf_id,
)
from crm_meetings.sandbox.seed import SeedData

__all__ = ["API_LIMIT", "COLLECTION_LIMIT", "SalesforceEmulator"]

Row = dict[str, Any]

API_LIMIT: Final = 15_000  # DailyApiRequests of a Developer Edition org
ORG_ID: Final = "00D5g0000000001AAA"  # the org in the identity URL of every token
COLLECTION_LIMIT: Final = 200
MIN_VERSION: Final = 50.0
UPDATED_WINDOW: Final = timedelta(days=30)
DELETED_WINDOW: Final = timedelta(days=15)
DEFAULT_BATCH: Final = 2000
CURSOR_LIFETIME: Final = timedelta(days=2)  # a query locator's life since API v56.0
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_MAX_LIFETIME: Final = timedelta(minutes=3)
JWT_LEEWAY: Final = timedelta(seconds=5)
LOGIN_URLS: Final = ("https://login.salesforce.com", "https://test.salesforce.com")
ROLLED_BACK: Final = Problem(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
)
_VERSION_PATH: Final = re.compile(r"^/services/data/v(\d+(?:\.\d+)?)(/|$)")


#: restricted picklists the emulator enforces (object reference: EmailMessage.Status,
#: EmailMessageRelation.RelationType); a missing value is REQUIRED_FIELD_MISSING
_PICKLISTS: Final[dict[str, dict[str, frozenset[str]]]] = {
    "EmailMessage": {"Status": frozenset("012345")},
    "EmailMessageRelation": {
        "RelationType": frozenset({"FromAddress", "ToAddress", "CcAddress", "BccAddress"})
    },
}


def _picklist_problems(obj: str, merged: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for name, allowed in _PICKLISTS[obj].items():
        value = merged.get(name)
        if value is None:
            problems.append(
                Problem("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", (name,))
            )
        elif value not in allowed:
            problems.append(
                Problem(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{name}: bad value for restricted picklist field: {value}",
                    (name,),
                )
            )
    return problems


class _Fail(Exception):
    """Answer the whole request with Salesforce's error list."""

    def __init__(self, status: int, *problems: Problem) -> None:
        self.status = status
        self.problems = problems


def _error_body(problems: tuple[Problem, ...]) -> list[dict[str, Any]]:
    out = []
    for problem in problems:
        body = problem.as_error()
        if not problem.fields:
            del body["fields"]
        out.append(body)
    return out


def _not_found() -> _Fail:
    return _Fail(404, Problem("NOT_FOUND", "The requested resource does not exist"))


class _Route(Route):
    """A route that also matches its path with a trailing slash (``query/``, ``limits/``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], methods: list[str]) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.path_regex = re.compile(self.path_regex.pattern.removesuffix("$") + "/?$")


def _floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


class _Gate:
    """ASGI middleware: API version, bearer token and the ``Sforce-Limit-Info`` header."""

    def __init__(self, app: ASGIApp, emulator: SalesforceEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        match = _VERSION_PATH.match(scope["path"])
        if match is None:  # the OAuth endpoints and the version list
            await self.app(scope, receive, send)
            return
        emulator = self.emulator
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        env = emulator.env
        if scheme.lower() != "bearer" or env is None or not env.tokens.check(emulator.name, token):
            response = emulator.error_response(
                401, Problem("INVALID_SESSION_ID", "Session expired or invalid")
            )
            await response(scope, receive, send)
            return
        if float(match.group(1)) < MIN_VERSION:
            await emulator.error_response(404, *_not_found().problems)(scope, receive, send)
            return
        emulator.count_call()

        async def send_with_usage(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"sforce-limit-info", emulator.limit_info().encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_usage)


class SalesforceEmulator:
    """A Salesforce org in memory, speaking the REST API."""

    name = "salesforce"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.env: SandboxEnv | None = None
        self.rows: dict[str, dict[str, Row]] = {name: {} for name in OBJECTS}
        self.deleted: dict[str, dict[str, datetime]] = {name: {} for name in OBJECTS}
        self._numbers: dict[str, int] = {}
        # query locator -> (records, batch size, expiry); see _open_cursor
        self._cursors: dict[str, tuple[list[dict[str, Any]], int, datetime]] = {}
        self._cursor_count = 0
        self._version = 0  # bumped by every write: the indexes below are rebuilt after one
        self._indexes: dict[tuple[str, str], tuple[tuple[int, int, int], dict[str, list[Row]]]]
        self._indexes = {}
        self.api_usage = 0
        self.api_limit = API_LIMIT
        self.reject_subject: str | None = None  # a validation rule: this Subject is refused
        self.missing_objects: set[str] = set()  # objects this org lacks (not deployed)
        self.jwt_keys: dict[str, bytes] = {}  # connected app client id -> public key (PEM)
        self.seed_ids: dict[str, str] = {}  # seed key -> Salesforce id
        self.user_id = self._seed_row(
            "User",
            {
                "FirstName": "Integration",
                "Name": "Integration User",
                "Email": "integration@crm-meetings.example",
                "Username": "integration@crm-meetings.example.sandbox",
                "IsActive": True,
                "TimeZoneSidKey": "UTC",
            },
        )
        for label in ("Customer Meeting", "Internal Meeting"):
            self._seed_row(
                "RecordType",
                {
                    "Name": label,
                    "DeveloperName": label.replace(" ", "_"),
                    "SobjectType": "Event",
                    "IsActive": True,
                },
            )

    # --- plumbing ---------------------------------------------------------------------

    def now(self) -> datetime:
        return (self.env.clock() if self.env else datetime.now(UTC)).astimezone(UTC)

    def count_call(self) -> None:
        with self._lock:
            self.api_usage += 1

    def limit_info(self) -> str:
        return f"api-usage={self.api_usage}/{self.api_limit}"

    def error_response(self, status: int, *problems: Problem) -> Response:
        return JSONResponse(
            _error_body(problems),
            status_code=status,
            headers={"Sforce-Limit-Info": self.limit_info()},
        )

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        """Salesforce's bodies: REQUEST_LIMIT_EXCEEDED is a 403, an expired token a 401."""
        if kind is FaultKind.RATE_LIMITED:
            return self.error_response(
                403, Problem("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            )
        if kind is FaultKind.UNAUTHORIZED:
            return self.error_response(
                401, Problem("INVALID_SESSION_ID", "Session expired or invalid")
            )
        return self.error_response(
            503,
            Problem(
                "SERVER_UNAVAILABLE",
                "Our servers are temporarily unavailable. Please try again later.",
            ),
        )

    def _new_id(self, obj: str) -> str:
        number = self._numbers.get(obj, 0) + 1
        self._numbers[obj] = number
        return sf_id(OBJECTS[obj].prefix, number)

    def _seed_row(self, obj: str, values: Row) -> str:
        now = self.now()
        row_id = self._new_id(obj)
        self._version += 1
        self.rows[obj][row_id] = {
            "Id": row_id,
            "CreatedDate": now,
            "LastModifiedDate": now,
            "SystemModstamp": now,
            "IsDeleted": False,
            **values,
        }
        return row_id

    def _index(self, obj: str, field: str) -> dict[str, list[Row]]:
        """The rows of ``obj`` by the lower-cased text of ``field`` (SOQL compares text
        case-insensitively), built once and kept until the next write to the rows."""
        table = self.rows[obj]
        stamp = (self._version, id(table), len(table))  # len: rows a test added directly
        cached = self._indexes.get((obj, field))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        index: dict[str, list[Row]] = {}
        for row in table.values():
            value = row.get(field)
            if isinstance(value, str):
                index.setdefault(value.lower(), []).append(row)
        self._indexes[obj, field] = (stamp, index)
        return index

    def find(self, record_id: str) -> tuple[str, Row] | None:
        """The live record with ``record_id`` (any object), by its key prefix."""
        for obj in OBJECTS.values():
            if record_id.startswith(obj.prefix):
                row = self.rows[obj.name].get(record_id)
                return (obj.name, row) if row is not None else None
        return None

    def _attributes(self, version: str) -> Callable[[str, str], dict[str, str]]:
        def attributes(obj: str, record_id: str) -> dict[str, str]:
            return {"type": obj, "url": f"/services/data/v{version}/sobjects/{obj}/{record_id}"}

        return attributes

    @staticmethod
    def _json(value: Any) -> Any:
        return format_datetime(value) if isinstance(value, datetime) else value

    def _render(self, obj: str, row: Row, version: str, fields: list[str] | None = None) -> Row:
        names = fields or list(OBJECTS[obj].fields)
        return {
            "attributes": self._attributes(version)(obj, row["Id"]),
            **{name: self._json(row.get(name)) for name in names},
        }

    # --- writes -----------------------------------------------------------------------

    def _prepare(
        self, obj: SObject, body: Mapping[str, Any], existing: Row | None
    ) -> tuple[Row, list[Problem]]:
        """Values to store for ``body`` (a create when ``existing`` is None), or problems."""
        values: Row = {}
        problems: list[Problem] = []
        for name, raw in body.items():
            if name == "attributes":
                continue
            if name not in obj.fields:
                raise _Fail(
                    400,
                    Problem(
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {obj.name}",
                    ),
                )
            spec = obj.fields[name]
            if not (spec.createable if existing is None else spec.updateable):
                problems.append(
                    Problem(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {name}. Please check the security "
                        "settings of this field and verify that it is read/write for your "
                        "profile or permission set.",
                        (name,),
                    )
                )
                continue
            value, problem = coerce(obj, name, raw)
            if problem is None and spec.type == "reference" and value is not None:
                found = self.find(value)
                if found is None or found[0] not in spec.reference_to:
                    problem = Problem(
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"{spec.label}: id value of incorrect type: {value}",
                        (name,),
                    )
            if problem is not None:
                problems.append(problem)
            else:
                values[name] = value
        if not problems:
            problems.extend(self._rules(obj, values, existing))
        return values, problems

    def _rules(self, obj: SObject, values: Row, existing: Row | None) -> list[Problem]:
        """Object rules: Event times, the sandbox's validation rule, unique external ids."""
        merged = {**(existing or {}), **values}
        problems: list[Problem] = []
        if obj.name == "Event":
            start = merged.get("StartDateTime")
            if start is None:
                return [
                    Problem(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [StartDateTime]",
                        ("StartDateTime",),
                    )
                ]
            if "EndDateTime" not in values and "DurationInMinutes" in values:
                values["EndDateTime"] = start + timedelta(minutes=values["DurationInMinutes"])
            elif "EndDateTime" not in values and existing is not None and "StartDateTime" in values:
                values["EndDateTime"] = start + timedelta(
                    minutes=existing.get("DurationInMinutes") or 0
                )
            end = values.get("EndDateTime", merged.get("EndDateTime"))
            if end is None:
                return [
                    Problem(
                        "REQUIRED_FIELD_MISSING",
                        "Required fields are missing: [DurationInMinutes]",
                        ("DurationInMinutes",),
                    )
                ]
            if end < start:
                problems.append(
                    Problem(
                        "FIELD_INTEGRITY_EXCEPTION",
                        "End Date Time: End time can't be before start time.",
                        ("EndDateTime",),
                    )
                )
            values["DurationInMinutes"] = int((end - start).total_seconds() // 60)
            values["ActivityDateTime"] = start
            subject = merged.get("Subject")
            if self.reject_subject is not None and subject == self.reject_subject:
                problems.append(
                    Problem(
                        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                        f"Subject: the sandbox's validation rule refuses {subject!r}",
                        ("Subject",),
                    )
                )
        if obj.name == "EventRelation":
            problems += self._twin(obj.name, ("EventId", "RelationId"), merged, existing)
            for name in ("EventId", "RelationId"):
                if merged.get(name) is None:
                    problems.append(
                        Problem(
                            "REQUIRED_FIELD_MISSING",
                            f"Required fields are missing: [{name}]",
                            (name,),
                        )
                    )
        if obj.name in _PICKLISTS:
            problems.extend(_picklist_problems(obj.name, merged))
        if obj.name == "EmailMessageRelation":
            keys = ("EmailMessageId", "RelationId", "RelationType")
            problems += self._twin(obj.name, keys, merged, existing)
        if obj.name == "CRM_Meeting_Participant__c" and merged.get("Session__c") is None:
            problems.append(
                Problem(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [Session__c]",
                    ("Session__c",),
                )
            )
        if self.env is not None:  # the sandbox's validation rules, on the record as saved
            for name, rule in self.env.rejections.check(self.name, obj.name, merged):
                problems.append(
                    Problem(
                        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                        rule.message or f"{name}: a validation rule refuses {merged[name]!r}",
                        (name,),
                    )
                )
        for name in obj.external_ids:
            value = values.get(name)
            if value is None or not obj.fields[name].unique:
                continue
            other = self._by_external_id(obj.name, name, value)
            if other is not None and (existing is None or other["Id"] != existing["Id"]):
                problems.append(
                    Problem(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {name} duplicates value on record with id: "
                        f"{other['Id']}",
                        (name,),
                    )
                )
        return problems

    def _twin(
        self, obj: str, keys: tuple[str, ...], merged: Row, existing: Row | None
    ) -> list[Problem]:
        """DUPLICATE_VALUE when another relation row has the same ``keys`` values."""
        wanted = tuple(merged.get(k) for k in keys)
        for row in self.rows[obj].values():
            if tuple(row.get(k) for k in keys) == wanted and (
                existing is None or row["Id"] != existing["Id"]
            ):
                message = (
                    "duplicate value found: RelationId duplicates value on record with id: "
                    f"{row['Id']}"
                )
                return [Problem("DUPLICATE_VALUE", message, ("RelationId",))]
        return []

    def _by_external_id(self, obj: str, name: str, value: str) -> Row | None:
        wanted = value.lower()
        return next(
            (
                row
                for row in self.rows[obj].values()
                if isinstance(row.get(name), str) and row[name].lower() == wanted
            ),
            None,
        )

    def _derived(self, obj: str, row: Row) -> None:
        if obj in ("Contact", "Lead", "User") and row.get("LastName") is not None:
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row["LastName"]) if p)
        if obj.endswith("__c") and not row.get("Name"):
            row["Name"] = row["Id"]

    def insert(self, obj_name: str, body: Mapping[str, Any]) -> tuple[str | None, list[Problem]]:
        obj = OBJECTS[obj_name]
        values, problems = self._prepare(obj, body, None)
        if problems:
            return None, problems
        defaults: Row = {}
        if "OwnerId" in obj.fields:
            defaults["OwnerId"] = self.user_id
        if obj_name == "Event":
            defaults["IsAllDayEvent"] = False
        row_id = self._seed_row(obj_name, {**defaults, **values})
        self._derived(obj_name, self.rows[obj_name][row_id])
        return row_id, []

    def update(self, obj_name: str, record_id: str, body: Mapping[str, Any]) -> list[Problem]:
        row = self.rows[obj_name].get(record_id)
        if row is None:
            if record_id in self.deleted[obj_name]:
                return [Problem("ENTITY_IS_DELETED", "entity is deleted")]
            return [Problem("NOT_FOUND", "The requested resource does not exist")]
        values, problems = self._prepare(OBJECTS[obj_name], body, row)
        if problems:
            return problems
        changed = {k: v for k, v in values.items() if row.get(k) != v}
        if changed:
            now = self.now()
            row.update(changed, LastModifiedDate=now, SystemModstamp=now)
            self._version += 1
            self._derived(obj_name, row)
        return []

    def upsert(
        self, obj_name: str, field: str, body: Mapping[str, Any]
    ) -> tuple[str | None, bool, list[Problem]]:
        value = body.get(field)
        if not isinstance(value, str) or not value:
            return None, False, [Problem("MISSING_ARGUMENT", f"{field} not specified", (field,))]
        existing = self._by_external_id(obj_name, field, value)
        if existing is None:
            row_id, problems = self.insert(obj_name, body)
            return row_id, True, problems
        updates = {k: v for k, v in body.items() if k != field}
        return existing["Id"], False, self.update(obj_name, existing["Id"], updates)

    def remove(self, obj_name: str, record_id: str) -> list[Problem]:
        if record_id in self.deleted[obj_name]:
            return [Problem("ENTITY_IS_DELETED", "entity is deleted")]
        row = self.rows[obj_name].pop(record_id, None)
        self._version += 1
        if row is None:
            return [Problem("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ())]
        self.deleted[obj_name][record_id] = self.now()
        if obj_name == "Event":
            for relation_id in [
                r["Id"] for r in self.rows["EventRelation"].values() if r["EventId"] == record_id
            ]:
                self.remove("EventRelation", relation_id)
        return []

    # --- seed and inspection ----------------------------------------------------------

    def load(self, data: Any) -> None:
        """Users, Accounts with a Contact, an Opportunity and a Lead each, and Events."""
        assert isinstance(data, SeedData)
        with self._lock:
            for user in data.users:
                first, _, last = user.name.partition(" ")
                self.seed_ids[user.key] = self._seed_row(
                    "User",
                    {
                        "FirstName": first,
                        "LastName": last,
                        "Name": user.name,
                        "Email": user.email,
                        "Username": user.email + ".sandbox",
                        "IsActive": True,
                        "TimeZoneSidKey": user.timezone,
                    },
                )
            for record in data.records:
                account = self._seed_row(
                    "Account", {"Name": record.company, "Website": f"https://{record.domain}"}
                )
                first, _, last = record.contact_name.partition(" ")
                person = {"FirstName": first, "LastName": last, "Name": record.contact_name}
                contact = self._seed_row(
                    "Contact", {**person, "Email": record.contact_email, "AccountId": account}
                )
                self.seed_ids[record.key] = account
                self.seed_ids[f"{record.key}/contact"] = contact
                self.seed_ids[f"{record.key}/opportunity"] = self._seed_row(
                    "Opportunity",
                    {
                        "Name": f"{record.company} renewal",
                        "AccountId": account,
                        "StageName": "Prospecting",
                    },
                )
                self.seed_ids[f"{record.key}/lead"] = self._seed_row(
                    "Lead",
                    {
                        **person,
                        "Email": f"lead@{record.domain}",
                        "Company": record.company,
                    },
                )
            for meeting in data.meetings:
                invitees = [
                    {"email": email, "name": name, "response": "NEEDS-ACTION"}
                    for name, email in meeting.invitees
                ]
                event = self._seed_row(
                    "Event",
                    {
                        "Subject": meeting.subject,
                        "StartDateTime": meeting.start,
                        "EndDateTime": meeting.end,
                        "ActivityDateTime": meeting.start,
                        "DurationInMinutes": int(
                            (meeting.end - meeting.start).total_seconds() // 60
                        ),
                        "IsAllDayEvent": False,
                        "Location": "Online",
                        "Description": "",
                        "OwnerId": self.seed_ids[meeting.organizer],
                        "WhatId": self.seed_ids[meeting.record],
                        "WhoId": self.seed_ids[f"{meeting.record}/contact"],
                        "Meeting_Timezone__c": meeting.timezone,
                        "Join_URL__c": meeting.join_url,
                        "Provider__c": meeting.provider,
                        "Provider_Meeting_Id__c": meeting.provider_meeting_id,
                        "Invitees__c": json.dumps(invitees),
                    },
                )
                self.seed_ids[meeting.key] = event
                self._seed_row(
                    "EventRelation",
                    {
                        "EventId": event,
                        "RelationId": self.seed_ids[f"{meeting.record}/contact"],
                        "Status": "New",
                        "IsInvitee": True,
                        "IsParent": False,
                        "IsWhat": False,
                    },
                )

    def state(self) -> Mapping[str, Any]:
        """Events, invitee relations, history rows (JSON-ready) and the API usage."""
        with self._lock:

            def rows(obj: str) -> list[Row]:
                return [
                    {k: self._json(v) for k, v in row.items()}
                    for row in sorted(self.rows[obj].values(), key=lambda r: r["Id"])
                ]

            return {
                "events": rows("Event"),
                "event_relations": rows("EventRelation"),
                "deleted_events": sorted(self.deleted["Event"]),
                "history_sessions": rows("CRM_Meeting_Session__c"),
                "history_participants": rows("CRM_Meeting_Participant__c"),
                "emails": rows("EmailMessage"),
                "email_relations": rows("EmailMessageRelation"),
                "api_usage": self.api_usage,
            }

    # --- the app ----------------------------------------------------------------------

    def build_app(self, env: SandboxEnv) -> Starlette:
        self.env = env
        prefix = "/services/data/v{version}"
        routes = [
            Route("/services/oauth2/token", self._token, methods=["POST"]),
            _Route("/services/data", self._versions, ["GET"]),
            _Route(f"{prefix}/limits", self._limits, ["GET"]),
            _Route(f"{prefix}/sobjects", self._describe_global, ["GET"]),
            _Route(f"{prefix}/query", self._query, ["GET"]),
            _Route(f"{prefix}/query/{{locator}}", self._query_more, ["GET"]),
            _Route(f"{prefix}/queryAll", self._query, ["GET"]),
            _Route(f"{prefix}/queryAll/{{locator}}", self._query_more, ["GET"]),
            _Route(f"{prefix}/composite/sobjects", self._collection, ["POST", "PATCH", "DELETE"]),
            _Route(
                f"{prefix}/composite/sobjects/{{sobject}}/{{field}}",
                self._collection_upsert,
                ["PATCH"],
            ),
            _Route(f"{prefix}/sobjects/{{sobject}}", self._create, ["POST"]),
            _Route(f"{prefix}/sobjects/{{sobject}}/describe", self._describe, ["GET"]),
            _Route(f"{prefix}/sobjects/{{sobject}}/updated", self._updated, ["GET"]),
            _Route(f"{prefix}/sobjects/{{sobject}}/deleted", self._deleted, ["GET"]),
            _Route(
                f"{prefix}/sobjects/{{sobject}}/{{id}}", self._record, ["GET", "PATCH", "DELETE"]
            ),
        ]

        async def failed(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, _Fail)
            return self.error_response(exc.status, *exc.problems)

        return Starlette(
            routes=routes,
            middleware=[Middleware(_Gate, emulator=self)],
            exception_handlers={_Fail: failed},
        )

    # handlers

    def _object(self, request: Request) -> SObject:
        name = request.path_params["sobject"]
        if name not in OBJECTS or name in self.missing_objects:
            raise _not_found()
        return OBJECTS[name]

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError as error:
            raise _Fail(
                400, Problem("JSON_PARSER_ERROR", f"Unexpected character: {error}")
            ) from None

    async def _versions(self, request: Request) -> Response:
        return JSONResponse(
            [
                {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"},
                {"label": "Summer '25", "url": "/services/data/v64.0", "version": "64.0"},
            ]
        )

    def register_jwt_key(self, client_id: str, public_key_pem: bytes | str) -> None:
        """Upload a connected app's certificate (here: its public key) for the JWT grant."""
        key = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        with self._lock:
            self.jwt_keys[client_id] = key

    @staticmethod
    def _refused(error: str, description: str) -> Response:
        return JSONResponse({"error": error, "error_description": description}, status_code=400)

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        assert self.env is not None
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            return self._jwt_grant(form.get("assertion", ""))
        if grant != "refresh_token":
            return self._refused("unsupported_grant_type", "grant type not supported")
        token = self.env.tokens.refresh(self.name, form.get("refresh_token", ""))
        if token is None:
            return self._refused("invalid_grant", "expired access/refresh token")
        return self._issued(token, "refresh_token api")

    def _jwt_grant(self, assertion: str) -> Response:
        """The OAuth 2.0 JWT bearer flow: iss = client id, sub = username, aud, exp ≤ 3 min."""
        assert self.env is not None
        try:
            claimed = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self._refused("invalid_grant", "invalid assertion")
        with self._lock:
            key = self.jwt_keys.get(str(claimed.get("iss")))
        if key is None:
            return self._refused("invalid_client_id", "client identifier invalid")
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,  # checked against the sandbox clock below
                    "verify_aud": False,
                    "require": ["iss", "sub", "aud", "exp"],
                },
            )
        except jwt.PyJWTError:
            return self._refused("invalid_grant", "invalid assertion")
        base = self.env.base_urls.get(self.name, "")
        audiences = {base.rstrip("/"), *LOGIN_URLS}
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not any(str(a).rstrip("/") in audiences for a in aud):
            return self._refused("invalid_grant", "audience is invalid")
        now = self.now()
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC)
        if expires <= now:
            return self._refused("invalid_grant", "expired authorization code")
        if expires > now + JWT_MAX_LIFETIME + JWT_LEEWAY:
            return self._refused("invalid_grant", "invalid assertion")
        with self._lock:
            user = next(
                (
                    u
                    for u in self.rows["User"].values()
                    if u.get("Username") == claims["sub"] and u.get("IsActive")
                ),
                None,
            )
        if user is None:
            return self._refused("invalid_grant", "user hasn't approved this consumer")
        token = self.env.tokens.issue(self.name, subject=str(claims["sub"]))
        return self._issued(token, "api")

    def _issued(self, token: str, scope: str) -> Response:
        assert self.env is not None
        base = self.env.base_urls.get(self.name, "")
        return JSONResponse(
            {
                "access_token": token,
                "signature": "sandbox",
                "scope": scope,
                "instance_url": base,
                "id": f"{base}/id/{ORG_ID}/{self.user_id}",
                "token_type": "Bearer",
                "issued_at": str(int(self.now().timestamp() * 1000)),
            }
        )

    async def _limits(self, request: Request) -> Response:
        return JSONResponse(
            {
                "DailyApiRequests": {
                    "Max": self.api_limit,
                    "Remaining": max(0, self.api_limit - self.api_usage),
                }
            }
        )

    async def _describe_global(self, request: Request) -> Response:
        version = request.path_params["version"]
        return JSONResponse(
            {
                "encoding": "UTF-8",
                "maxBatchSize": COLLECTION_LIMIT,
                "sobjects": [
                    {
                        "name": o.name,
                        "label": o.label,
                        "keyPrefix": o.prefix,
                        "custom": o.custom,
                        "urls": {"sobject": f"/services/data/v{version}/sobjects/{o.name}"},
                    }
                    for o in OBJECTS.values()
                ],
            }
        )

    async def _describe(self, request: Request) -> Response:
        obj = self._object(request)
        with self._lock:
            types = [r for r in self.rows["RecordType"].values() if r["SobjectType"] == obj.name]
        return JSONResponse(describe(obj, request.path_params["version"], types))

    async def _create(self, request: Request) -> Response:
        obj = self._object(request)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise _Fail(400, Problem("JSON_PARSER_ERROR", "Expected a JSON object"))
        with self._lock:
            row_id, problems = self.insert(obj.name, body)
        if problems:
            raise _Fail(400, *problems)
        version = request.path_params["version"]
        return JSONResponse(
            {"id": row_id, "success": True, "errors": []},
            status_code=201,
            headers={"Location": f"/services/data/v{version}/sobjects/{obj.name}/{row_id}"},
        )

    async def _record(self, request: Request) -> Response:
        obj = self._object(request)
        record_id = request.path_params["id"]
        with self._lock:
            if request.method == "GET":
                row = self.rows[obj.name].get(record_id)
                if row is None:
                    raise _not_found()
                fields = request.query_params.get("fields")
                names = [f.strip() for f in fields.split(",")] if fields else None
                for name in names or []:
                    if name not in obj.fields:
                        raise _Fail(
                            400,
                            Problem(
                                "INVALID_FIELD",
                                f"No such column '{name}' on sobject of type {obj.name}",
                            ),
                        )
                return JSONResponse(
                    self._render(obj.name, row, request.path_params["version"], names)
                )
            if request.method == "DELETE":
                problems = self.remove(obj.name, record_id)
                status = 404
            else:
                body = await self._body(request)
                problems = self.update(obj.name, record_id, body)
                status = (
                    404
                    if problems and problems[0].code in ("NOT_FOUND", "ENTITY_IS_DELETED")
                    else 400
                )
        if problems:
            if problems[0].code == "INVALID_CROSS_REFERENCE_KEY":
                raise _not_found()
            raise _Fail(status, *problems)
        return Response(status_code=204)

    def _window(self, request: Request, window: timedelta) -> tuple[datetime, datetime, datetime]:
        try:
            start = _floor_minute(parse_datetime(request.query_params["start"]))
            end = _floor_minute(parse_datetime(request.query_params["end"]))
        except (KeyError, ValueError):
            raise _Fail(
                400,
                Problem("MISSING_ARGUMENT", "start and end are required ISO 8601 date-times"),
            ) from None
        now = self.now()
        if end <= start:
            raise _Fail(
                400,
                Problem("INVALID_REPLICATION_DATE", "EndDate is before or equal to StartDate"),
            )
        if start < _floor_minute(now - window):
            raise _Fail(
                400,
                Problem(
                    "INVALID_REPLICATION_DATE",
                    f"startDate cannot be more than {window.days} days ago",
                ),
            )
        return start, end, min(end, _floor_minute(now))

    async def _updated(self, request: Request) -> Response:
        obj = self._object(request)
        start, end, covered = self._window(request, UPDATED_WINDOW)
        with self._lock:
            ids = sorted(
                row["Id"]
                for row in self.rows[obj.name].values()
                if start <= row["SystemModstamp"] < end
            )
        return JSONResponse({"ids": ids, "latestDateCovered": format_datetime(covered)})

    async def _deleted(self, request: Request) -> Response:
        obj = self._object(request)
        start, end, covered = self._window(request, DELETED_WINDOW)
        with self._lock:
            found = sorted(
                (when, record_id)
                for record_id, when in self.deleted[obj.name].items()
                if start <= when < end
            )
        return JSONResponse(
            {
                "deletedRecords": [
                    {"id": record_id, "deletedDate": format_datetime(when)}
                    for when, record_id in found
                ],
                "earliestDateAvailable": format_datetime(
                    _floor_minute(self.now() - DELETED_WINDOW)
                ),
                "latestDateCovered": format_datetime(covered),
            }
        )

    # SOQL

    def _context(self, version: str) -> soql.Context:
        def children(obj: str, field: str, parent_id: str) -> list[Row]:
            """The child rows of one parent, through the index of the reference field."""
            candidates = self._index(obj, field).get(parent_id.lower(), [])
            return [row for row in candidates if row.get(field) == parent_id]

        return soql.Context(
            lookup=self.find,
            children=children,
            attributes=self._attributes(version),
            value=self._json,
        )

    def _candidates(self, query: soql.Query) -> list[Row]:
        """The rows that can match: those of one index entry when the WHERE clause requires
        ``Field = 'text'`` (alone or in an AND), else every row. The full WHERE still runs."""
        equality = _required_equality(query.where)
        if equality is None:
            return list(self.rows[query.sobject].values())
        path, value = equality
        return list(self._index(query.sobject, path).get(value.lower(), []))

    async def _query(self, request: Request) -> Response:
        text = request.query_params.get("q")
        version = request.path_params["version"]
        if not text:
            raise _Fail(400, Problem("MALFORMED_QUERY", "The query string is missing"))
        try:
            query = soql.parse(text)
            with self._lock:
                rows = self._candidates(query)
                if request.url.path.rstrip("/").endswith("queryAll"):
                    rows += [
                        {"Id": record_id, "IsDeleted": True, "SystemModstamp": when}
                        for record_id, when in self.deleted[query.sobject].items()
                    ]
                records = soql.run(query, rows, self._context(version))
        except soql.SoqlError as error:
            raise _Fail(400, Problem(error.code, error.message)) from None
        options = request.headers.get("sforce-query-options", "")
        match = re.search(r"batchSize\s*=\s*(\d+)", options)
        batch = min(DEFAULT_BATCH, max(200, int(match.group(1)))) if match else DEFAULT_BATCH
        if len(records) <= batch:  # one page: Salesforce opens no cursor
            return JSONResponse(_query_page(version, "", records, batch, 0))
        locator = self._open_cursor(records, batch)
        return JSONResponse(_query_page(version, locator, records, batch, 0))

    def _open_cursor(self, records: list[dict[str, Any]], batch: int) -> str:
        """A server-side cursor for the rest of a query's results. Since API v56.0 there is
        no limit on open cursors and each is kept for 2 days ("API Query Cursor Limits",
        Salesforce app limits cheatsheet); expired ones are dropped here, so a long-running
        sandbox does not keep every query's results."""
        now = self.now()
        with self._lock:
            for stale in [k for k, (_, _, until) in self._cursors.items() if until <= now]:
                del self._cursors[stale]
            self._cursor_count += 1
            locator = sf_id("01g", self._cursor_count)[:15]
            self._cursors[locator] = (records, batch, now + CURSOR_LIFETIME)
        return locator

    async def _query_more(self, request: Request) -> Response:
        locator, _, offset = request.path_params["locator"].partition("-")
        with self._lock:
            cursor = self._cursors.get(locator)
        if cursor is None or cursor[2] <= self.now() or not offset.isdigit():
            raise _Fail(400, Problem("INVALID_QUERY_LOCATOR", "invalid query locator"))
        records, batch, _ = cursor
        version = request.path_params["version"]
        return JSONResponse(_query_page(version, locator, records, batch, int(offset)))

    # sObject Collections

    @staticmethod
    def _all_or_none(value: object) -> bool:
        return value is True or (isinstance(value, str) and value.lower() == "true")

    def _records(self, body: Any) -> tuple[list[Row], bool]:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise _Fail(400, Problem("JSON_PARSER_ERROR", "Expected {allOrNone, records: [...]}"))
        records = body["records"]
        self._check_size(len(records))
        for record in records:
            kind = record.get("attributes", {}).get("type") if isinstance(record, dict) else None
            if kind not in OBJECTS:
                raise _Fail(
                    400,
                    Problem("INVALID_TYPE", "Must send a concrete entity type.", ()),
                )
        return records, self._all_or_none(body.get("allOrNone"))

    @staticmethod
    def _check_size(size: int) -> None:
        if size > COLLECTION_LIMIT:
            raise _Fail(
                400,
                Problem(
                    "EXCEEDED_ID_LIMIT",
                    f"record limit reached. cannot submit more than {COLLECTION_LIMIT} "
                    "records into this call",
                ),
            )

    def _atomically(self, all_or_none: bool, steps: list[Callable[[], Row]]) -> list[Row]:
        """Run per-record steps; with allOrNone, undo everything if one failed."""
        with self._lock:
            saved = (
                (
                    {k: {i: dict(r) for i, r in t.items()} for k, t in self.rows.items()},
                    {k: dict(t) for k, t in self.deleted.items()},
                    dict(self._numbers),
                )
                if all_or_none
                else None
            )
            results = [step() for step in steps]
            if saved is not None and not all(r["success"] for r in results):
                self.rows, self.deleted, self._numbers = saved
                self._version += 1
                results = [
                    r
                    if not r["success"]
                    else {"success": False, "errors": [ROLLED_BACK.as_status()]}
                    for r in results
                ]
        return results

    @staticmethod
    def _result(record_id: str | None, problems: list[Problem], **extra: Any) -> Row:
        if problems:
            return {"success": False, "errors": [p.as_status() for p in problems]}
        return {"id": record_id, "success": True, "errors": [], **extra}

    async def _collection(self, request: Request) -> Response:
        steps: list[Callable[[], Row]] = []
        if request.method == "DELETE":
            ids = [i for i in request.query_params.get("ids", "").split(",") if i]
            self._check_size(len(ids))
            all_or_none = self._all_or_none(request.query_params.get("allOrNone"))
            for record_id in ids:

                def delete(record_id: str = record_id) -> Row:
                    found = next(
                        (o for o in OBJECTS.values() if record_id.startswith(o.prefix)), None
                    )
                    if found is None:
                        return self._result(
                            None, [Problem("MALFORMED_ID", f"malformed id {record_id}")]
                        )
                    return {
                        "id": record_id,
                        **self._result(record_id, self.remove(found.name, record_id)),
                    }

                steps.append(delete)
            return JSONResponse(self._atomically(all_or_none, steps))
        records, all_or_none = self._records(await self._body(request))
        for record in records:
            self._validate_fields(record)
        for record in records:
            kind = record["attributes"]["type"]
            if request.method == "POST":

                def create(kind: str = kind, record: Row = record) -> Row:
                    return self._result(*self.insert(kind, record))

                steps.append(create)
            else:

                def update(kind: str = kind, record: Row = record) -> Row:
                    record_id = record.get("id") or record.get("Id")
                    if not isinstance(record_id, str):
                        return self._result(
                            None,
                            [Problem("MISSING_ARGUMENT", "Id not specified in an update call")],
                        )
                    body = {k: v for k, v in record.items() if k not in ("id", "Id")}
                    return self._result(record_id, self.update(kind, record_id, body))

                steps.append(update)
        return JSONResponse(self._atomically(all_or_none, steps))

    def _validate_fields(self, record: Row) -> None:
        obj = OBJECTS[record["attributes"]["type"]]
        for name in record:
            if name not in ("attributes", "id") and name not in obj.fields:
                raise _Fail(
                    400,
                    Problem(
                        "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}"
                    ),
                )

    async def _collection_upsert(self, request: Request) -> Response:
        obj = self._object(request)
        field = request.path_params["field"]
        if field not in obj.external_ids:
            raise _Fail(
                400,
                Problem(
                    "INVALID_FIELD",
                    f"Field name provided, {field} is not an External ID or indexed field for "
                    f"{obj.name}",
                ),
            )
        records, all_or_none = self._records(await self._body(request))
        for record in records:
            if record["attributes"]["type"] != obj.name:
                raise _Fail(400, Problem("INVALID_TYPE", f"Records must be of type {obj.name}"))
            self._validate_fields(record)
        steps: list[Callable[[], Row]] = []
        for record in records:

            def upsert(record: Row = record) -> Row:
                record_id, created, problems = self.upsert(obj.name, field, record)
                return self._result(record_id, problems, created=created)

            steps.append(upsert)
        return JSONResponse(self._atomically(all_or_none, steps))


def _required_equality(cond: soql.Cond | None) -> tuple[str, str] | None:
    """A ``Field = 'text'`` every matching row must satisfy (own field, text value)."""
    if cond is None:
        return None
    if cond.op == "and":
        return next(filter(None, map(_required_equality, cond.parts)), None)
    if cond.op == "=" and "." not in cond.path and isinstance(cond.value, str):
        return cond.path, cond.value
    return None


def _query_page(
    version: str, locator: str, records: list[dict[str, Any]], batch: int, offset: int
) -> dict[str, Any]:
    """One page of a query's results, with ``nextRecordsUrl`` while more remain."""
    body: dict[str, Any] = {"totalSize": len(records), "done": offset + batch >= len(records)}
    if not body["done"]:
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{offset + batch}"
    body["records"] = records[offset : offset + batch]
    return body
