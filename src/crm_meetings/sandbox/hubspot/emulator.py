"""The HubSpot emulator: CRM v3 objects, v4 associations, properties, owners, OAuth.

Paths, bodies and limits follow HubSpot's published reference:

- ``/crm/v3/objects/{objectType}`` (and the date-versioned ``/crm/objects/{version}/…``):
  get / create / update / archive, the list with ``after`` paging (≤ 100, ``archived=true``
  lists archived records with ``archivedAt``), ``batch/create|read|update|upsert|archive``
  (≤ 100 inputs, else 400 VALIDATION_ERROR; ``objectWriteTraceId`` inputs get a 207 with
  ``results`` and ``errors``), ``search`` (filterGroups, sorts, ``after``, ≤ 200 per page,
  400 past the 10,000th result);
- ``/crm/v4/objects/…/associations/…`` and ``/crm/v4/associations/{from}/{to}/batch/…``;
- ``/crm/v3/properties/{objectType}``, ``/crm/v3/schemas``, ``/crm/v3/owners/``;
- ``/oauth/v1/token`` (refresh_token grant) and ``/oauth/v1/access-tokens/{token}``.

Every API answer carries ``X-HubSpot-RateLimit-*`` headers; errors use HubSpot's body
``{status, message, correlationId, category, errors?, context?}``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_meetings.sandbox.base import FaultKind, SandboxEnv
from crm_meetings.sandbox.hubspot.schema import (
    ASSOCIATION_TYPES,
    OBJECT_TYPES,
    PORTAL_ID,
    SESSION_FQN,
    SESSION_OBJECT,
    association_type,
    canonical,
)
from crm_meetings.sandbox.hubspot.store import (
    HubSpotApiError,
    Record,
    Store,
    format_datetime,
    validation_error,
)
from crm_meetings.sandbox.seed import SeedData

__all__ = ["HubSpotEmulator"]

MAX_BATCH: Final = 100
MAX_SEARCH_LIMIT: Final = 200
MAX_LIST_LIMIT: Final = 100
SEARCH_CAP: Final = 10_000
RATE_MAX: Final = 110  # requests per rolling ten seconds (OAuth apps)
RATE_INTERVAL_MS: Final = 10_000
DAILY_MAX: Final = 250_000
ACCESS_TOKEN_TTL: Final = 1800

Handler = Callable[[Request, "Call"], Awaitable[Response]]

_TYPE_BY_ID: Final = {
    type_id: (pair if forward else (pair[1], pair[0]))
    for pair, ids in ASSOCIATION_TYPES.items()
    for type_id, forward in ((ids[0], True), (ids[1], False))
}


@dataclass
class Call:
    """One parsed request: path parameters and the JSON body (``None`` when absent)."""

    params: Mapping[str, str]
    body: Any


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _query_list(request: Request, name: str) -> str | None:
    """A list parameter, sent repeated (the SDK) or comma-separated (curl)."""
    values = request.query_params.getlist(name)
    return ",".join(values) if values else None


def _batch_inputs(body: Any) -> list[Any]:
    inputs = body.get("inputs") if isinstance(body, Mapping) else None
    if not isinstance(inputs, list):
        raise validation_error("Invalid input JSON: inputs must be a list")
    if not inputs or len(inputs) > MAX_BATCH:
        raise validation_error(
            f"The batch has {len(inputs)} inputs; it must have between 1 and {MAX_BATCH}.",
            context={"inputs": [str(len(inputs))]},
        )
    return inputs


def _batch_answer(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], ok_status: int, started: str
) -> JSONResponse:
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": format_datetime(datetime.now(UTC)),
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    return _json(body, 207 if errors else ok_status)


def _record_error(error: HubSpotApiError, context: Mapping[str, list[str]]) -> dict[str, Any]:
    out = error.body()
    out.pop("correlationId", None)
    out["context"] = {**error.context, **context}
    return out


class HubSpotEmulator:
    """HubSpot's CRM API for one portal, in memory (a :class:`VendorEmulator`)."""

    name = "hubspot"

    def __init__(self) -> None:
        self.search_cap = SEARCH_CAP  # tests lower it to reach the ceiling cheaply
        self.env: SandboxEnv | None = None
        self.store = Store(clock=lambda: datetime.now(UTC))
        self.owners: list[dict[str, Any]] = []
        self._rate_lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._today = 0

    # --- hooks for tests ----------------------------------------------------------------

    @property
    def reject_subject(self) -> str | None:
        """Meetings with exactly this ``hs_meeting_title`` fail validation (per record)."""
        return self.store.reject_title

    @reject_subject.setter
    def reject_subject(self, value: str | None) -> None:
        self.store.reject_title = value

    def drop_property(self, object_type: str, name: str) -> None:
        """Make a property disappear, as if the setup step had not created it."""
        self.store.missing_properties.add((canonical(object_type) or object_type, name))

    # --- VendorEmulator -----------------------------------------------------------------

    def build_app(self, env: SandboxEnv) -> Starlette:
        self.env = env
        self.store.clock = env.clock
        self.store.rejections = env.rejections
        routes = [
            Route("/oauth/v1/token", self._plain(self.token), methods=["POST"]),
            Route("/oauth/v1/access-tokens/{token}", self._plain(self.token_info), methods=["GET"]),
            Route("/crm/v3/owners/", self._api(self.list_owners), methods=["GET"]),
            Route("/crm/v3/owners/{ownerId}", self._api(self.get_owner), methods=["GET"]),
            Route("/crm/v3/schemas", self._api(self.list_schemas), methods=["GET"]),
            Route("/crm-object-schemas/v3/schemas", self._api(self.list_schemas), methods=["GET"]),
            Route(
                "/crm/v3/properties/{objectType}", self._api(self.list_properties), methods=["GET"]
            ),
            Route(
                "/crm/v3/properties/{objectType}/{propertyName}",
                self._api(self.get_property),
                methods=["GET"],
            ),
        ]
        routes += [  # the date-versioned twins
            Route("/crm/owners/{version}/", self._api(self.list_owners), methods=["GET"]),
            Route(
                "/crm/properties/{version}/{objectType}",
                self._api(self.list_properties),
                methods=["GET"],
            ),
            Route(
                "/crm/properties/{version}/{objectType}/{propertyName}",
                self._api(self.get_property),
                methods=["GET"],
            ),
        ]
        for prefix in ("/crm/v3/objects", "/crm/objects/{version}"):
            base = prefix + "/{objectType}"
            routes += [
                Route(base + "/search", self._api(self.search), methods=["POST"]),
                Route(base + "/batch/create", self._api(self.batch_create), methods=["POST"]),
                Route(base + "/batch/read", self._api(self.batch_read), methods=["POST"]),
                Route(base + "/batch/update", self._api(self.batch_update), methods=["POST"]),
                Route(base + "/batch/upsert", self._api(self.batch_upsert), methods=["POST"]),
                Route(base + "/batch/archive", self._api(self.batch_archive), methods=["POST"]),
                Route(base, self._api(self.list_objects), methods=["GET"]),
                Route(base, self._api(self.create_object), methods=["POST"]),
                Route(base + "/{objectId}", self._api(self.get_object), methods=["GET"]),
                Route(base + "/{objectId}", self._api(self.update_object), methods=["PATCH"]),
                Route(base + "/{objectId}", self._api(self.archive_object), methods=["DELETE"]),
            ]
        v4 = "/crm/v4/objects/{objectType}/{objectId}/associations"
        batch = "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch"
        routes += [
            Route(v4 + "/{toObjectType}", self._api(self.list_associations), methods=["GET"]),
            Route(
                "/crm/v4/objects/{objectType}/{objectId}/associations/default/{toObjectType}/{toObjectId}",
                self._api(self.associate_default),
                methods=["PUT"],
            ),
            Route(v4 + "/{toObjectType}/{toObjectId}", self._api(self.associate), methods=["PUT"]),
            Route(
                v4 + "/{toObjectType}/{toObjectId}", self._api(self.dissociate), methods=["DELETE"]
            ),
            Route(batch + "/read", self._api(self.batch_read_associations), methods=["POST"]),
            Route(batch + "/create", self._api(self.batch_associate), methods=["POST"]),
            Route(
                batch + "/associate/default",
                self._api(self.batch_associate_default),
                methods=["POST"],
            ),
            Route(batch + "/archive", self._api(self.batch_dissociate), methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        if kind is FaultKind.RATE_LIMITED:
            body = {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
            }
            headers = self._rate_headers(remaining=0)
            headers["Retry-After"] = f"{retry_after:g}"
            return JSONResponse(body, status_code=429, headers=headers)
        if kind is FaultKind.UNAUTHORIZED:
            return JSONResponse(self._expired_body(), status_code=401)
        return JSONResponse(
            HubSpotApiError(500, "INTERNAL_ERROR", "internal error").body(), status_code=500
        )

    def load(self, data: Any) -> None:
        if not isinstance(data, SeedData):
            raise TypeError(f"expected SeedData, got {type(data).__name__}")
        store = self.store
        for i, user in enumerate(data.users):
            first, _, last = user.name.partition(" ")
            self.owners.append(
                {
                    "id": str(100 + i),
                    "email": user.email,
                    "firstName": first,
                    "lastName": last,
                    "userId": 9000 + i,
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "updatedAt": "2026-01-01T00:00:00.000Z",
                    "archived": False,
                    "teams": [],
                }
            )
        companies: dict[str, Record] = {}
        contacts: dict[str, Record] = {}
        for record in data.records:
            company = store.create("companies", {"name": record.company, "domain": record.domain})
            first, _, last = record.contact_name.partition(" ")
            contact = store.create(
                "contacts", {"email": record.contact_email, "firstname": first, "lastname": last}
            )
            deal = store.create("deals", {"dealname": f"{record.company} renewal"})
            store.associate("contacts", contact.id, "companies", company.id)
            store.associate("deals", deal.id, "companies", company.id)
            companies[record.key] = company
            contacts[record.key] = contact
        owner_of = {user.key: str(100 + i) for i, user in enumerate(data.users)}
        for meeting in data.meetings:
            organizer = data.user(meeting.organizer)
            created = store.create(
                "meetings",
                {
                    "hs_timestamp": format_datetime(meeting.start),
                    "hs_meeting_title": meeting.subject,
                    "hs_meeting_start_time": format_datetime(meeting.start),
                    "hs_meeting_end_time": format_datetime(meeting.end),
                    "hs_meeting_external_url": meeting.join_url,
                    "hs_meeting_outcome": "SCHEDULED",
                    "hubspot_owner_id": owner_of[meeting.organizer],
                    "crm_meetings_timezone": meeting.timezone,
                    "crm_meetings_organizer": organizer.email,
                    "crm_meetings_provider": meeting.provider,
                    "crm_meetings_provider_meeting_id": meeting.provider_meeting_id,
                },
            )
            store.associate("meetings", created.id, "companies", companies[meeting.record].id)
            store.associate("meetings", created.id, "contacts", contacts[meeting.record].id)

    def state(self) -> Mapping[str, Any]:
        store = self.store
        with store.lock:
            kinds = ("meetings", "emails", SESSION_OBJECT)
            links = sorted(link for link in store.links if link[0] in kinds)
        return {
            "meetings": store.snapshot("meetings"),
            "associations": [list(link) for link in links if link[0] == "meetings"],
            "sessions": store.snapshot(SESSION_OBJECT),
            "session_associations": [list(link) for link in links if link[0] == SESSION_OBJECT],
            "emails": store.snapshot("emails"),
            "email_associations": [list(link) for link in links if link[0] == "emails"],
            "owners": list(self.owners),
        }

    # --- request plumbing ---------------------------------------------------------------

    def _rate_headers(self, *, remaining: int | None = None) -> dict[str, str]:
        now = time.monotonic()
        with self._rate_lock:
            while self._recent and now - self._recent[0] > RATE_INTERVAL_MS / 1000:
                self._recent.popleft()
            if remaining is None:
                self._recent.append(now)
                self._today += 1
                remaining = max(0, RATE_MAX - len(self._recent))
            today = self._today
        return {
            "X-HubSpot-RateLimit-Max": str(RATE_MAX),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(RATE_INTERVAL_MS),
            "X-HubSpot-RateLimit-Daily": str(DAILY_MAX),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, DAILY_MAX - today)),
        }

    @staticmethod
    def _expired_body() -> dict[str, Any]:
        return {
            "status": "error",
            "message": "The OAuth token used to make this call expired 0 hour(s) ago.",
            "correlationId": str(uuid.uuid4()),
            "category": "EXPIRED_AUTHENTICATION",
        }

    def _unauthorized(self, token: str) -> Response:
        assert self.env is not None
        if token and self.env.tokens.subject(token) is not None:
            return JSONResponse(self._expired_body(), status_code=401)
        body = {
            "status": "error",
            "message": "Authentication credentials not found. This API supports OAuth 2.0 "
            "authentication and you can find more details at "
            "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "correlationId": str(uuid.uuid4()),
            "category": "INVALID_AUTHENTICATION",
        }
        return JSONResponse(body, status_code=401)

    async def _call(self, request: Request) -> Call:
        raw = await request.body()
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as error:
                raise validation_error(f"Invalid input JSON on line 1: {error}") from None
        return Call(request.path_params, body)

    def _api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Bearer auth, JSON parsing, HubSpot error bodies and rate-limit headers."""

        async def endpoint(request: Request) -> Response:
            assert self.env is not None
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.env.tokens.check(self.name, token):
                response = self._unauthorized(token)
            else:
                try:
                    response = await handler(request, await self._call(request))
                except HubSpotApiError as error:
                    response = _json(error.body(), error.status)
            response.headers.update(self._rate_headers())
            return response

        return endpoint

    def _plain(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, Call(request.path_params, None))
            except HubSpotApiError as error:
                return _json(error.body(), error.status)

        return endpoint

    def _type(self, call: Call, key: str = "objectType") -> str:
        return self.store.object_type(call.params[key])

    # --- OAuth --------------------------------------------------------------------------

    async def token(self, request: Request, call: Call) -> Response:
        assert self.env is not None
        form = await request.form()
        grant = str(form.get("grant_type", ""))
        refresh = str(form.get("refresh_token", ""))
        if grant != "refresh_token":
            body = {
                "status": "BAD_GRANT_TYPE",
                "message": f"unsupported grant type: {grant or 'missing'}",
                "correlationId": str(uuid.uuid4()),
            }
            return _json(body, 400)
        access = self.env.tokens.refresh(self.name, refresh, ttl=ACCESS_TOKEN_TTL)
        if access is None:
            body = {
                "status": "BAD_REFRESH_TOKEN",
                "message": "missing or unknown refresh token",
                "correlationId": str(uuid.uuid4()),
            }
            return _json(body, 400)
        return _json(
            {
                "token_type": "bearer",
                "refresh_token": refresh,
                "access_token": access,
                "expires_in": ACCESS_TOKEN_TTL,
            }
        )

    async def token_info(self, request: Request, call: Call) -> Response:
        assert self.env is not None
        token = call.params["token"]
        if not self.env.tokens.check(self.name, token):
            raise HubSpotApiError(404, "OBJECT_NOT_FOUND", "Access token not found or expired")
        return _json(
            {
                "token": token,
                "user": self.owners[0]["email"] if self.owners else "admin@example.com",
                "hub_id": PORTAL_ID,
                "app_id": 1,
                "expires_in": ACCESS_TOKEN_TTL,
                "user_id": 9000,
                "token_type": "access",
                "scopes": ["crm.objects.contacts.read", "crm.objects.contacts.write"],
            }
        )

    # --- owners, properties, schemas ----------------------------------------------------

    async def list_owners(self, request: Request, call: Call) -> Response:
        email = request.query_params.get("email")
        owners = [o for o in self.owners if email is None or o["email"] == email.lower()]
        limit = min(int(request.query_params.get("limit", "100")), 500)
        start = int(request.query_params.get("after", "0") or 0)
        page = owners[start : start + limit]
        body: dict[str, Any] = {"results": page}
        if start + limit < len(owners):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return _json(body)

    async def get_owner(self, request: Request, call: Call) -> Response:
        found = next((o for o in self.owners if o["id"] == call.params["ownerId"]), None)
        if found is None:
            raise HubSpotApiError(404, "OBJECT_NOT_FOUND", "Owner not found")
        return _json(found)

    async def list_properties(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        return _json(
            {
                "results": [
                    p.to_json(object_type) for p in self.store.properties(object_type).values()
                ]
            }
        )

    async def get_property(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        prop = self.store.properties(object_type).get(call.params["propertyName"])
        if prop is None:
            raise HubSpotApiError(
                404,
                "OBJECT_NOT_FOUND",
                f"Unable to find property {call.params['propertyName']} for {object_type}",
            )
        return _json(prop.to_json(object_type))

    async def list_schemas(self, request: Request, call: Call) -> Response:
        schema = {
            "id": "9000001",
            "objectTypeId": SESSION_OBJECT,
            "name": "crm_meetings_session",
            "fullyQualifiedName": SESSION_FQN,
            "labels": {"singular": "Meeting session", "plural": "Meeting sessions"},
            "primaryDisplayProperty": "crm_meetings_session_id",
            "requiredProperties": ["crm_meetings_session_id"],
            "searchableProperties": ["crm_meetings_session_id"],
            "properties": [
                p.to_json(SESSION_OBJECT) for p in self.store.properties(SESSION_OBJECT).values()
            ],
            "associations": [
                {"fromObjectTypeId": SESSION_OBJECT, "toObjectTypeId": target, "name": name}
                for target, name in (("0-47", "session_to_meeting"), ("0-1", "session_to_contact"))
            ],
            "archived": False,
        }
        return _json({"results": [schema]})

    # --- objects ------------------------------------------------------------------------

    def _associations_of(
        self, object_type: str, record: Record, wanted: str | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in (wanted or "").split(","):
            target = canonical(name.strip()) if name.strip() else None
            if target is None:
                continue
            ids = self.store.associated(object_type, record.id, target)
            if not ids:
                continue
            kind = f"{self._singular(object_type)}_to_{self._singular(target)}"
            out[name.strip()] = {"results": [{"id": i, "type": kind} for i in ids]}
        return out

    @staticmethod
    def _singular(object_type: str) -> str:
        label = next(t.singular for t in OBJECT_TYPES if t.name == object_type)
        return "meeting_event" if label == "meeting" else label

    @staticmethod
    def _wanted(value: Any) -> list[str] | None:
        if value is None:
            return None
        names = value.split(",") if isinstance(value, str) else list(value)
        return [n.strip() for n in names if n and n.strip()] or None

    def _render(self, record: Record, wanted: list[str] | None) -> dict[str, Any]:
        return record.to_json(None if wanted is None else list(dict.fromkeys([*wanted, *_DEFAULT])))

    async def get_object(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        archived = request.query_params.get("archived", "false").lower() == "true"
        record_id = call.params["objectId"]
        id_property = request.query_params.get("idProperty")
        if archived:
            found = self.store.records[object_type].get(record_id)
            if found is None or not found.archived:
                raise HubSpotApiError(404, "OBJECT_NOT_FOUND", "Object not found.")
            record = found
        else:
            record = self.store.get(object_type, record_id, id_property=id_property)
        body = self._render(record, self._wanted(_query_list(request, "properties")))
        associations = self._associations_of(
            object_type, record, _query_list(request, "associations")
        )
        if associations:
            body["associations"] = associations
        return _json(body)

    def _create_links(self, object_type: str, record_id: str, specs: Any) -> None:
        for spec in specs or []:
            target_id = str((spec.get("to") or {}).get("id", ""))
            for kind in spec.get("types") or []:
                pair = _TYPE_BY_ID.get(int(kind.get("associationTypeId", -1)))
                if pair is None or pair[0] != object_type:
                    raise validation_error(
                        f"Invalid association type {kind.get('associationTypeId')} "
                        f"for {object_type}",
                        sub_category="crm.associations.INVALID_ASSOCIATION_TYPE",
                    )
                try:
                    self.store.associate(object_type, record_id, pair[1], target_id)
                except HubSpotApiError:
                    raise validation_error(
                        f"Association target {pair[1]} {target_id} does not exist",
                        context={"id": [target_id]},
                    ) from None

    def _create_with_links(self, object_type: str, item: Any) -> Record:
        if not isinstance(item, Mapping):
            raise validation_error("Invalid input JSON: each input must be an object")
        with self.store.lock:
            for spec in item.get("associations") or []:  # check targets before writing
                target_id = str((spec.get("to") or {}).get("id", ""))
                for kind in spec.get("types") or []:
                    pair = _TYPE_BY_ID.get(int(kind.get("associationTypeId", -1)))
                    if pair is not None and target_id not in self.store.records[pair[1]]:
                        raise validation_error(
                            f"Association target {pair[1]} {target_id} does not exist",
                            context={"id": [target_id]},
                        )
            record = self.store.create(object_type, item.get("properties") or {})
            self._create_links(object_type, record.id, item.get("associations"))
            return record

    async def create_object(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        record = self._create_with_links(object_type, call.body or {})
        return _json(record.to_json(), 201)

    async def update_object(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        props = (call.body or {}).get("properties") or {}
        record = self.store.update(
            object_type,
            call.params["objectId"],
            props,
            id_property=request.query_params.get("idProperty"),
        )
        return _json(record.to_json())

    async def archive_object(self, request: Request, call: Call) -> Response:
        self.store.archive(self._type(call), call.params["objectId"])
        return Response(status_code=204)

    async def list_objects(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        query = request.query_params
        limit = max(1, min(int(query.get("limit", "10")), MAX_LIST_LIMIT))
        rows, after = self.store.page(
            object_type,
            archived=query.get("archived", "false").lower() == "true",
            after=query.get("after"),
            limit=limit,
        )
        wanted = self._wanted(_query_list(request, "properties"))
        body: dict[str, Any] = {"results": [self._render(r, wanted) for r in rows]}
        if after is not None:
            body["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
        return _json(body)

    async def search(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        body = call.body or {}
        limit = int(body.get("limit", 10))
        if limit > MAX_SEARCH_LIMIT or limit < 0:
            raise validation_error(
                f"limit must be between 0 and {MAX_SEARCH_LIMIT}; got {limit}",
                context={"limit": [str(limit)]},
            )
        after = int(body.get("after") or 0)
        if after >= self.search_cap:
            raise validation_error(
                f"Paging past {self.search_cap} results is not supported: the search endpoints "
                f"return at most {self.search_cap} results per query.",
                context={"after": [str(after)]},
            )
        rows = self.store.search(object_type, body)
        wanted = self._wanted(body.get("properties")) or []
        page = rows[after : min(after + limit, self.search_cap)]
        answer: dict[str, Any] = {
            "total": len(rows),
            "results": [r.to_json(list(dict.fromkeys([*wanted, *_DEFAULT]))) for r in page],
        }
        following = after + limit
        if following < min(len(rows), self.search_cap):
            answer["paging"] = {"next": {"after": str(following)}}
        return _json(answer)

    # --- batches ------------------------------------------------------------------------

    async def batch_create(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        inputs = _batch_inputs(call.body)
        started = format_datetime(datetime.now(UTC))
        traced = all(isinstance(i, Mapping) and i.get("objectWriteTraceId") for i in inputs)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        with self.store.lock:
            if not traced:  # all or nothing: check every input before writing any
                for item in inputs:
                    self.store._validate(object_type, item.get("properties") or {}, creating=True)
            for item in inputs:
                trace = item.get("objectWriteTraceId")
                try:
                    record = self._create_with_links(object_type, item)
                except HubSpotApiError as error:
                    if not traced:
                        raise
                    errors.append(_record_error(error, {"objectWriteTraceId": [str(trace)]}))
                    continue
                rendered = record.to_json()
                if trace:
                    rendered["objectWriteTraceId"] = trace
                results.append(rendered)
        return _batch_answer(results, errors, 201, started)

    async def batch_read(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        inputs = _batch_inputs(call.body)
        body = call.body
        id_property = body.get("idProperty")
        wanted = self._wanted(body.get("properties"))
        started = format_datetime(datetime.now(UTC))
        results, missing = [], []
        for item in inputs:
            key = str(item.get("id", ""))
            try:
                record = self.store.get(object_type, key, id_property=id_property)
            except HubSpotApiError:
                missing.append(key)
                continue
            results.append(self._render(record, wanted))
        errors = []
        if missing:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {object_type} objects, they may be deleted "
                    "or not exist. Check that ids are valid.",
                    "context": {"ids": missing},
                }
            )
        return _batch_answer(results, errors, 200, started)

    async def batch_update(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        inputs = _batch_inputs(call.body)
        started = format_datetime(datetime.now(UTC))
        results, errors = [], []
        for item in inputs:
            key = str(item.get("id", ""))
            trace = item.get("objectWriteTraceId")
            try:
                record = self.store.update(
                    object_type,
                    key,
                    item.get("properties") or {},
                    id_property=item.get("idProperty"),
                )
            except HubSpotApiError as error:
                context = {"ids": [key]}
                if trace:
                    context["objectWriteTraceId"] = [str(trace)]
                errors.append(_record_error(error, context))
                continue
            rendered = record.to_json()
            if trace:
                rendered["objectWriteTraceId"] = trace
            results.append(rendered)
        return _batch_answer(results, errors, 200, started)

    async def batch_upsert(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        inputs = _batch_inputs(call.body)
        started = format_datetime(datetime.now(UTC))
        results, errors = [], []
        for item in inputs:
            key = str(item.get("id", ""))
            trace = item.get("objectWriteTraceId")
            id_property = item.get("idProperty") or "hs_object_id"
            try:
                record, new = self.store.upsert(
                    object_type, id_property, key, item.get("properties") or {}
                )
            except HubSpotApiError as error:
                context = {"ids": [key]}
                if trace:
                    context["objectWriteTraceId"] = [str(trace)]
                errors.append(_record_error(error, context))
                continue
            rendered = {**record.to_json(), "new": new}
            if trace:
                rendered["objectWriteTraceId"] = trace
            results.append(rendered)
        return _batch_answer(results, errors, 200, started)

    async def batch_archive(self, request: Request, call: Call) -> Response:
        object_type = self._type(call)
        for item in _batch_inputs(call.body):
            self.store.archive(object_type, str(item.get("id", "")))
        return Response(status_code=204)

    # --- associations (v4) ----------------------------------------------------------------

    def _assoc_types(self, from_type: str, to_type: str) -> list[dict[str, Any]]:
        found = association_type(from_type, to_type)
        if found is None:
            return []
        category, type_id = found
        return [{"category": category, "typeId": type_id, "label": None}]

    async def list_associations(self, request: Request, call: Call) -> Response:
        from_type, to_type = self._type(call), self._type(call, "toObjectType")
        self.store.get(from_type, call.params["objectId"])
        ids = self.store.associated(from_type, call.params["objectId"], to_type)
        limit = max(1, min(int(request.query_params.get("limit", "500")), 500))
        start = int(request.query_params.get("after", "0") or 0)
        page = ids[start : start + limit]
        body: dict[str, Any] = {
            "results": [
                {"toObjectId": int(i), "associationTypes": self._assoc_types(from_type, to_type)}
                for i in page
            ]
        }
        if start + limit < len(ids):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return _json(body)

    def _link_answer(
        self, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> dict[str, Any]:
        types = {t.name: t.type_id for t in OBJECT_TYPES}
        return {
            "fromObjectTypeId": types[from_type],
            "fromObjectId": int(from_id),
            "toObjectTypeId": types[to_type],
            "toObjectId": int(to_id),
            "labels": [],
        }

    async def associate(self, request: Request, call: Call) -> Response:
        from_type, to_type = self._type(call), self._type(call, "toObjectType")
        from_id, to_id = call.params["objectId"], call.params["toObjectId"]
        self.store.associate(from_type, from_id, to_type, to_id)
        return _json(self._link_answer(from_type, from_id, to_type, to_id), 201)

    async def associate_default(self, request: Request, call: Call) -> Response:
        return await self.associate(request, call)

    async def dissociate(self, request: Request, call: Call) -> Response:
        self.store.dissociate(
            self._type(call),
            call.params["objectId"],
            self._type(call, "toObjectType"),
            call.params["toObjectId"],
        )
        return Response(status_code=204)

    async def batch_read_associations(self, request: Request, call: Call) -> Response:
        from_type = self._type(call, "fromObjectType")
        to_type = self._type(call, "toObjectType")
        started = format_datetime(datetime.now(UTC))
        results = []
        for item in _batch_inputs(call.body):
            from_id = str(item.get("id", ""))
            ids = self.store.associated(from_type, from_id, to_type)
            if ids:
                results.append(
                    {
                        "from": {"id": from_id},
                        "to": [
                            {
                                "toObjectId": int(i),
                                "associationTypes": self._assoc_types(from_type, to_type),
                            }
                            for i in ids
                        ],
                    }
                )
        return _batch_answer(results, [], 200, started)

    def _batch_links(self, call: Call, *, create: bool) -> Response:
        from_type = self._type(call, "fromObjectType")
        to_type = self._type(call, "toObjectType")
        started = format_datetime(datetime.now(UTC))
        results, errors = [], []
        for item in _batch_inputs(call.body):
            from_id = str((item.get("from") or {}).get("id", ""))
            targets = item.get("to")
            to_ids = [
                str(t.get("id", ""))
                for t in (targets if isinstance(targets, list) else [targets or {}])
            ]
            for to_id in to_ids:
                if not create:
                    self.store.dissociate(from_type, from_id, to_type, to_id)
                    continue
                try:
                    self.store.associate(from_type, from_id, to_type, to_id)
                except HubSpotApiError as error:
                    errors.append(_record_error(error, {"fromId": [from_id], "toId": [to_id]}))
                    continue
                results.append(self._link_answer(from_type, from_id, to_type, to_id))
        if not create:
            return Response(status_code=204)
        return _batch_answer(results, errors, 201, started)

    async def batch_associate(self, request: Request, call: Call) -> Response:
        return self._batch_links(call, create=True)

    async def batch_associate_default(self, request: Request, call: Call) -> Response:
        return self._batch_links(call, create=True)

    async def batch_dissociate(self, request: Request, call: Call) -> Response:
        return self._batch_links(call, create=False)


_DEFAULT: Final = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
