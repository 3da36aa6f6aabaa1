"""The Zoom API v2 emulator: meetings, past meeting instances, participant reports, OAuth.

Served paths (Zoom's API reference, https://developers.zoom.us/docs/api/meetings/):

================================================  ==============================================
``POST   /oauth/token``                           Server-to-Server OAuth (``account_credentials``;
                                                  the client secret is a sandbox refresh token)
``GET    /v2/users/{userId}``                     a user, by id or e-mail
``GET    /v2/users/{userId}/meetings``            ``type=scheduled|upcoming|previous_meetings``
``POST   /v2/users/{userId}/meetings``            create (201)
``GET    /v2/meetings/{meetingId}``               one meeting
``PATCH  /v2/meetings/{meetingId}``               update (204)
``DELETE /v2/meetings/{meetingId}``               delete (204; ``cancel_meeting_reminder``)
``PUT    /v2/meetings/{meetingId}/status``        ``{"action": "end"}`` (204)
``GET    /v2/past_meetings/{meetingId}/instances``  ``{"meetings": [{uuid, start_time}]}``;
                                                  a meeting that never ran has an empty list
``GET    /v2/past_meetings/{meetingId}``          one instance's details (id: the latest one)
``GET    /v2/past_meetings/{meetingId}/participants``  participants, ``next_page_token`` paging
``GET    /v2/report/meetings/{meetingId}/participants``  the same report (duration in seconds)
``GET    /v2/report/users/{userId}/meetings``     instances a user hosted, ``from``/``to`` dates
                                                  (at most one month), ``next_page_token``
================================================  ==============================================

Lists take ``page_size`` (default 30, at most 300: larger values are clamped). Errors are
Zoom's ``{"code", "message"}`` bodies: 124 for a bad token, 3001 for a meeting that does not
exist, 300 for validation, 429 with ``Retry-After`` and ``X-RateLimit-*`` headers.

Instance UUIDs follow Zoom's rule: some start with ``/`` and some contain ``//``; those must be
double URL-encoded in a path. Sent single-encoded, the HTTP server decodes ``%2F`` to ``/``,
no route matches and the answer is Zoom's 404. (The emulator never issues a UUID with a lone
inner ``/``: Zoom documents no rule for those and a loopback server cannot tell them apart.)
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_meetings.sandbox.base import FaultKind, SandboxEnv
from crm_meetings.sandbox.seed import SeedData, SeedParticipant

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "ZoomEmulator",
    "instance_uuid",
    "meeting_ended_event",
    "sign_webhook",
]

VENDOR: Final = "zoom"
DEFAULT_PAGE_SIZE: Final = 30
MAX_PAGE_SIZE: Final = 300
REPORT_MAX_DAYS: Final = 31
FIRST_NEW_MEETING_ID: Final = 89_000_000_000
DIAL_IN: Final = (
    {"country": "US", "country_name": "US", "city": "New York", "number": "+1 6465588656",
     "type": "toll"},
    {"country": "DE", "country_name": "Germany", "city": "", "number": "+49 6971049922",
     "type": "toll"},
)  # fmt: skip


_T = TypeVar("_T")


def _zoom_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_zoom_time(value: object, field_name: str) -> datetime:
    if not isinstance(value, str):
        raise _Invalid(field_name, "must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(field_name, f"{value!r} is not yyyy-MM-ddTHH:mm:ssZ") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _user_id(email: str) -> str:
    digest = hashlib.sha256(email.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22].replace("-", "x").replace("_", "y")


def instance_uuid(meeting_id: int, n: int) -> str:
    """A deterministic base64 instance UUID; a third start with ``/``, a third contain ``//``."""
    digest = hashlib.sha256(f"{meeting_id}:{n}".encode()).digest()[:16]
    raw = base64.b64encode(digest).decode().replace("/", "A")  # 22 chars + "=="
    kind = (meeting_id + n) % 3
    if kind == 0:
        return "/" + raw[1:]
    if kind == 1:
        return raw[:8] + "//" + raw[10:]
    return raw


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """Zoom's ``x-zm-signature``: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class _Invalid(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class _Participant:
    id: str
    user_id: str
    name: str
    email: str
    join: datetime
    leave: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "user_email": self.email,
            "join_time": _zoom_time(self.join),
            "leave_time": _zoom_time(self.leave),
            "duration": int((self.leave - self.join).total_seconds()),
            "failover": False,
            "status": "in_meeting",
        }


@dataclass
class _Instance:
    uuid: str
    start: datetime
    end: datetime
    participants: list[_Participant]


@dataclass
class _Meeting:
    id: int
    uuid: str
    host_id: str
    host_email: str
    topic: str
    start: datetime
    duration: int  # minutes
    timezone: str
    agenda: str
    join_url: str
    created_at: datetime
    status: str = "waiting"
    deleted: bool = False
    cancel_reminder: bool = False
    instances: list[_Instance] = field(default_factory=list)
    _summary: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_summary":  # any change of a field: the list row is formatted again
            object.__setattr__(self, "_summary", None)

    def summary(self) -> dict[str, Any]:
        """The meeting's row in a list (formatted once per change of the meeting)."""
        if self._summary is None:
            self._summary = self._format_summary()
        return dict(self._summary)

    def _format_summary(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "id": self.id,
            "host_id": self.host_id,
            "topic": self.topic,
            "type": 2,
            "start_time": _zoom_time(self.start),
            "duration": self.duration,
            "timezone": self.timezone,
            "agenda": self.agenda,
            "created_at": _zoom_time(self.created_at),
            "join_url": self.join_url,
        }

    def details(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "host_email": self.host_email,
            "status": self.status,
            "start_url": f"https://zoom.example.com/s/{self.id}?zak=sandbox",
            "password": "sandbox1",
            "pre_schedule": False,
            "settings": {
                "host_video": False,
                "participant_video": False,
                "join_before_host": False,
                "audio": "both",
                "auto_recording": "none",
                "global_dial_in_numbers": [dict(number) for number in DIAL_IN],
            },
        }


@dataclass
class _User:
    id: str
    email: str
    first_name: str
    last_name: str
    timezone: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "display_name": f"{self.first_name} {self.last_name}".strip(),
            "type": 2,
            "status": "active",
            "timezone": self.timezone,
        }


def _error(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **extra}, status, headers=headers)


def _not_found(meeting_id: object = None) -> JSONResponse:
    suffix = f": {meeting_id}" if meeting_id not in (None, "") else ""
    return _error(404, 3001, f"Meeting does not exist{suffix}.")


class ZoomEmulator:
    """Zoom's meetings, past instances and participant reports, in memory."""

    name = VENDOR

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.users: dict[str, _User] = {}  # by id
        self.meetings: dict[int, _Meeting] = {}
        # host id -> the host's meetings not deleted, by (start, id); rebuilt after a change
        self._hosted: dict[str, list[_Meeting]] = {}
        self._ids = itertools.count(FIRST_NEW_MEETING_ID)
        self._env: SandboxEnv | None = None

    # --- VendorEmulator -----------------------------------------------------------------

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        if kind is FaultKind.RATE_LIMITED:
            return _error(
                429,
                429,
                "You have reached the maximum per-second rate limit for this API. Try again later.",
                headers={
                    "Retry-After": f"{retry_after:g}",
                    "X-RateLimit-Category": "Medium",
                    "X-RateLimit-Type": "QPS",
                    "X-RateLimit-Limit": "30",
                    "X-RateLimit-Remaining": "0",
                },
            )
        if kind is FaultKind.UNAUTHORIZED:
            return _error(401, 124, "Access token is expired.")
        return _error(503, 503, "Service temporarily unavailable. Please try again later.")

    def load(self, data: Any) -> None:
        """Seed users (every organizer) and the seed's Zoom meetings with their instances."""
        assert isinstance(data, SeedData)
        with self._lock:
            for seed_user in data.users:
                self._add_user(seed_user.email, seed_user.name, seed_user.timezone)
            for seeded in data.meetings:
                if seeded.provider != VENDOR:
                    continue
                host = self._user(data.user(seeded.organizer).email)
                assert host is not None
                meeting_id = int(seeded.provider_meeting_id)
                meeting = _Meeting(
                    id=meeting_id,
                    uuid=instance_uuid(meeting_id, len(seeded.sessions)),
                    host_id=host.id,
                    host_email=host.email,
                    topic=seeded.subject,
                    start=seeded.start,
                    duration=int((seeded.end - seeded.start).total_seconds() // 60),
                    timezone=seeded.timezone,
                    agenda="",
                    join_url=seeded.join_url,
                    created_at=seeded.start - timedelta(days=7),
                )
                self.meetings[meeting_id] = meeting
                self._hosted.clear()
                for session in seeded.sessions:
                    self.record_session(
                        meeting_id, session.start, session.end, session.participants
                    )

    def state(self) -> Mapping[str, Any]:
        with self._lock:
            return {
                "users": [user.to_json() for user in self.users.values()],
                "meetings": {
                    str(m.id): {
                        **m.details(),
                        "deleted": m.deleted,
                        "cancel_meeting_reminder": m.cancel_reminder,
                        "instances": [
                            {
                                "uuid": i.uuid,
                                "start_time": _zoom_time(i.start),
                                "end_time": _zoom_time(i.end),
                                "participants": [p.to_json() for p in i.participants],
                            }
                            for i in m.instances
                        ],
                    }
                    for m in self.meetings.values()
                },
            }

    # --- helpers for tests and the sync engine's tests ----------------------------------

    def record_session(
        self,
        meeting_id: int | str,
        start: datetime,
        end: datetime,
        participants: Sequence[SeedParticipant],
    ) -> str:
        """Add an instance (the meeting ran from ``start`` to ``end``); returns its UUID."""
        with self._lock:
            meeting = self.meetings[int(meeting_id)]
            n = len(meeting.instances)
            uuid = instance_uuid(meeting.id, n)
            people = [
                _Participant(
                    id=hashlib.sha256(f"{uuid}:{p}".encode()).hexdigest()[:26],
                    user_id=str(16_778_240 + p),
                    name=person.name,
                    email=person.email or "",
                    join=person.join,
                    leave=person.leave,
                )
                for p, person in enumerate(participants)
            ]
            meeting.instances.append(_Instance(uuid, start, end, people))
            meeting.uuid = instance_uuid(meeting.id, n + 1)  # the next instance's UUID
            return uuid

    def instance_uuids(self, meeting_id: int | str) -> list[str]:
        with self._lock:
            return [i.uuid for i in self.meetings[int(meeting_id)].instances]

    # --- lookups ------------------------------------------------------------------------

    def _add_user(self, email: str, name: str, timezone: str) -> _User:
        first, _, last = name.partition(" ")
        user = _User(_user_id(email), email, first, last, timezone)
        self.users[user.id] = user
        return user

    def _user(self, user_id: str, token_subject: str | None = None) -> _User | None:
        if user_id == "me":  # an account-level (S2S) token: the account owner
            if not token_subject:
                return next(iter(self.users.values()), None)
            user_id = token_subject
        found = self.users.get(user_id)
        if found is None:
            found = next((u for u in self.users.values() if u.email == user_id.lower()), None)
        return found

    def _meeting(self, meeting_id: str) -> _Meeting | None:
        if not meeting_id.isdigit():
            return None
        meeting = self.meetings.get(int(meeting_id))
        return None if meeting is None or meeting.deleted else meeting

    def _instance(self, key: str) -> tuple[_Meeting, _Instance] | None:
        """An instance by UUID, or a meeting id's latest instance (deleted meetings too)."""
        if key.isdigit():
            meeting = self.meetings.get(int(key))
            if meeting is None or not meeting.instances:
                return None
            return meeting, meeting.instances[-1]
        for meeting in self.meetings.values():
            for instance in meeting.instances:
                if instance.uuid == key:
                    return meeting, instance
        return None

    # --- the app ------------------------------------------------------------------------

    def build_app(self, env: SandboxEnv) -> Starlette:
        self._env = env
        routes = [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/v2/users/{userId}", self._get_user, methods=["GET"]),
            Route("/v2/users/{userId}/meetings", self._list_meetings, methods=["GET"]),
            Route("/v2/users/{userId}/meetings", self._create_meeting, methods=["POST"]),
            Route("/v2/meetings/{meetingId}", self._get_meeting, methods=["GET"]),
            Route("/v2/meetings/{meetingId}", self._update_meeting, methods=["PATCH"]),
            Route("/v2/meetings/{meetingId}", self._delete_meeting, methods=["DELETE"]),
            Route("/v2/meetings/{meetingId}/status", self._meeting_status, methods=["PUT"]),
            Route("/v2/past_meetings/{meetingId}/instances", self._instances, methods=["GET"]),
            Route("/v2/past_meetings/{meetingId}", self._past_meeting, methods=["GET"]),
            Route(
                "/v2/past_meetings/{meetingId}/participants", self._participants, methods=["GET"]
            ),
            Route(
                "/v2/report/meetings/{meetingId}/participants",
                self._participants,
                methods=["GET"],
            ),
            Route("/v2/report/users/{userId}/meetings", self._report_meetings, methods=["GET"]),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, _Invalid: self._invalid},
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            if "/past_meetings/" in request.url.path or "/report/meetings/" in request.url.path:
                return _not_found()  # e.g. a single-encoded UUID that starts with "/"
            return _error(404, 404, "Not Found")
        if exc.status_code == 405:
            return _error(405, 405, "Method Not Allowed")
        return _error(exc.status_code, exc.status_code, str(exc.detail))

    async def _invalid(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Invalid)
        return _error(
            400, 300, "Validation Failed.", errors=[{"field": exc.field, "message": exc.message}]
        )

    def _subject(self, request: Request) -> str | None:
        """The token's subject when the bearer token is live, else ``None``."""
        assert self._env is not None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._env.tokens.check(VENDOR, token):
            return None
        return self._env.tokens.subject(token) or ""

    def _unauthorized(self) -> Response:
        return _error(401, 124, "Invalid access token.")

    # OAuth

    async def _token(self, request: Request) -> Response:
        assert self._env is not None
        grant = request.query_params.get("grant_type")
        form = await request.form()
        grant = grant or str(form.get("grant_type", ""))
        secret = ""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                _, _, secret = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                secret = ""
        if grant == "account_credentials":
            if not request.query_params.get("account_id"):
                return JSONResponse(
                    {"reason": "Missing account_id", "error": "invalid_request"}, 400
                )
            credential = secret
        elif grant == "refresh_token":
            credential = str(form.get("refresh_token", ""))
        else:
            return JSONResponse(
                {"reason": "Unsupported grant type", "error": "unsupported_grant_type"}, 400
            )
        access = self._env.tokens.refresh(VENDOR, credential) if credential else None
        if access is None:
            return JSONResponse(
                {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}, 400
            )
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": 3599,
                "scope": "meeting:read:admin meeting:write:admin report:read:admin",
                "api_url": str(request.base_url).rstrip("/"),
            }
        )

    # users and meetings

    async def _get_user(self, request: Request) -> Response:
        subject = self._subject(request)
        if subject is None:
            return self._unauthorized()
        user = self._user(request.path_params["userId"], subject)
        if user is None:
            return _error(404, 1001, "User does not exist: " + request.path_params["userId"])
        return JSONResponse(user.to_json())

    async def _list_meetings(self, request: Request) -> Response:
        subject = self._subject(request)
        if subject is None:
            return self._unauthorized()
        user = self._user(request.path_params["userId"], subject)
        if user is None:
            return _error(404, 1001, "User does not exist: " + request.path_params["userId"])
        kind = request.query_params.get("type", "scheduled")
        assert self._env is not None
        now = self._env.clock()
        with self._lock:
            mine: Sequence[_Meeting] = self._hosted_by(user.id)
            if kind == "previous_meetings":
                mine = [m for m in mine if m.instances or m.start < now]
            elif kind in ("upcoming", "upcoming_meetings"):
                mine = mine[bisect.bisect_left(mine, now, key=lambda m: m.start) :]
            elif kind not in ("scheduled", "live"):
                raise _Invalid("type", f"{kind!r} is not a valid meeting list type")
            return self._page(
                request, mine, _Meeting.summary, "meetings", f"meetings:{user.id}:{kind}"
            )

    def _hosted_by(self, host_id: str) -> list[_Meeting]:
        """The host's meetings not deleted, by (start, id): indexed once per change of the
        meetings, so a list request does not scan and sort every meeting."""
        with self._lock:
            if not self._hosted:
                for meeting in self.meetings.values():
                    if not meeting.deleted:
                        self._hosted.setdefault(meeting.host_id, []).append(meeting)
                for hosted in self._hosted.values():
                    hosted.sort(key=lambda m: (m.start, m.id))
            return self._hosted.get(host_id, [])

    async def _create_meeting(self, request: Request) -> Response:
        subject = self._subject(request)
        if subject is None:
            return self._unauthorized()
        user = self._user(request.path_params["userId"], subject)
        if user is None:
            return _error(404, 1001, "User does not exist: " + request.path_params["userId"])
        body = await self._body(request)
        topic, agenda = self._texts(body)
        start = _parse_zoom_time(body.get("start_time"), "start_time")
        duration = body.get("duration", 60)
        if not isinstance(duration, int) or duration <= 0:
            raise _Invalid("duration", "must be a positive number of minutes")
        with self._lock:
            meeting_id = next(self._ids)
            meeting = _Meeting(
                id=meeting_id,
                uuid=instance_uuid(meeting_id, 0),
                host_id=user.id,
                host_email=user.email,
                topic=topic or "Zoom meeting",
                start=start,
                duration=duration,
                timezone=str(body.get("timezone") or user.timezone),
                agenda=agenda or "",
                join_url=f"https://zoom.example.com/j/{meeting_id}?pwd=sandbox1",
                created_at=self._env.clock() if self._env else datetime.now(UTC),
            )
            self.meetings[meeting_id] = meeting
            self._hosted.clear()
            return JSONResponse(meeting.details(), 201)

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise _Invalid("body", "is not JSON") from None
        if not isinstance(body, dict):
            raise _Invalid("body", "must be a JSON object")
        return body

    @staticmethod
    def _texts(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
        topic, agenda = body.get("topic"), body.get("agenda")
        if topic is not None and (not isinstance(topic, str) or len(topic) > 200):
            raise _Invalid("topic", "must be text of at most 200 characters")
        if agenda is not None and (not isinstance(agenda, str) or len(agenda) > 2000):
            raise _Invalid("agenda", "must be text of at most 2000 characters")
        return topic, agenda

    async def _get_meeting(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _not_found(request.path_params["meetingId"])
            return JSONResponse(meeting.details())

    async def _update_meeting(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        body = await self._body(request)
        topic, agenda = self._texts(body)
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _not_found(request.path_params["meetingId"])
            if "start_time" in body:
                meeting.start = _parse_zoom_time(body["start_time"], "start_time")
                self._hosted.clear()
            if "duration" in body:
                if not isinstance(body["duration"], int) or body["duration"] <= 0:
                    raise _Invalid("duration", "must be a positive number of minutes")
                meeting.duration = body["duration"]
            if "timezone" in body:
                meeting.timezone = str(body["timezone"])
            meeting.topic = topic if topic is not None else meeting.topic
            meeting.agenda = agenda if agenda is not None else meeting.agenda
        return Response(status_code=204)

    async def _delete_meeting(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _not_found(request.path_params["meetingId"])
            meeting.deleted = True
            self._hosted.clear()
            meeting.cancel_reminder = (
                request.query_params.get("cancel_meeting_reminder", "false") == "true"
            )
        return Response(status_code=204)

    async def _meeting_status(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        body = await self._body(request)
        if body.get("action") != "end":
            raise _Invalid("action", "must be 'end'")
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _not_found(request.path_params["meetingId"])
            meeting.status = "waiting"
        return Response(status_code=204)

    # past meetings and reports

    async def _instances(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        key = request.path_params["meetingId"]
        with self._lock:
            meeting = self.meetings.get(int(key)) if key.isdigit() else None
            if meeting is None:
                return _not_found(key)
            rows = [{"uuid": i.uuid, "start_time": _zoom_time(i.start)} for i in meeting.instances]
        return JSONResponse({"meetings": rows})

    async def _past_meeting(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        key = unquote(request.path_params["meetingId"])  # the second decoding
        with self._lock:
            found = self._instance(key)
            if found is None:
                return _not_found(key)
            meeting, instance = found
            return JSONResponse(self._instance_row(meeting, instance))

    def _instance_row(self, meeting: _Meeting, instance: _Instance) -> dict[str, Any]:
        minutes = int((instance.end - instance.start).total_seconds() // 60)
        user = self.users[meeting.host_id]
        return {
            "uuid": instance.uuid,
            "id": meeting.id,
            "host_id": meeting.host_id,
            "type": 2,
            "topic": meeting.topic,
            "user_name": user.to_json()["display_name"],
            "user_email": user.email,
            "start_time": _zoom_time(instance.start),
            "end_time": _zoom_time(instance.end),
            "duration": minutes,
            "total_minutes": sum(
                int((p.leave - p.join).total_seconds() // 60) for p in instance.participants
            ),
            "participants_count": len(instance.participants),
            "source": "Zoom",
        }

    async def _participants(self, request: Request) -> Response:
        if self._subject(request) is None:
            return self._unauthorized()
        key = unquote(request.path_params["meetingId"])
        with self._lock:
            found = self._instance(key)
            if found is None:
                return _not_found(key)
            return self._page(
                request,
                found[1].participants,
                _Participant.to_json,
                "participants",
                f"participants:{key}",
            )

    async def _report_meetings(self, request: Request) -> Response:
        subject = self._subject(request)
        if subject is None:
            return self._unauthorized()
        user = self._user(request.path_params["userId"], subject)
        if user is None:
            return _error(404, 1001, "User does not exist: " + request.path_params["userId"])
        try:
            first = date.fromisoformat(request.query_params["from"])
            last = date.fromisoformat(request.query_params["to"])
        except (KeyError, ValueError):
            raise _Invalid("from", "from and to are required dates (yyyy-mm-dd)") from None
        if last < first or (last - first).days > REPORT_MAX_DAYS:
            return _error(400, 300, "The date range must be within one month.")
        with self._lock:
            found = [
                (meeting, instance)
                for meeting in self.meetings.values()
                if meeting.host_id == user.id
                for instance in meeting.instances
                if first <= instance.start.astimezone(UTC).date() <= last
            ]
            found.sort(key=lambda pair: (_zoom_time(pair[1].start), pair[1].uuid))
            key = f"report:{user.id}:{first}:{last}"
            return self._page(
                request, found, lambda pair: self._instance_row(*pair), "meetings", key
            )

    def _page(
        self,
        request: Request,
        rows: Sequence[_T],
        render: Callable[[_T], dict[str, Any]],
        name: str,
        key: str,
    ) -> Response:
        """Zoom's token paging: ``page_size`` (clamped to 300) and ``next_page_token``.

        Only the page's rows are rendered (``render``), so a request costs its page.
        """
        try:
            size = int(request.query_params.get("page_size", DEFAULT_PAGE_SIZE))
        except ValueError:
            raise _Invalid("page_size", "must be a number") from None
        size = max(1, min(size, MAX_PAGE_SIZE))
        offset: int | None = 0
        token = request.query_params.get("next_page_token")
        if token:
            offset = _offset(token, key)
        if offset is None:
            return _error(400, 300, "The next page token is invalid or expired.")
        page = rows[offset : offset + size]
        following = offset + size
        body: dict[str, Any] = {
            "page_size": size,
            "total_records": len(rows),
            "next_page_token": _token(following, key) if following < len(rows) else "",
            name: [render(row) for row in page],
        }
        if name == "meetings" and key.startswith("report:"):
            first, last = key.split(":")[2:4]
            body = {"from": first, "to": last, "page_count": -(-len(rows) // size), **body}
        return JSONResponse(body)

    # webhooks

    def meeting_ended_event(self, meeting_id: int | str) -> dict[str, Any]:
        """The ``meeting.ended`` payload for the meeting's latest instance."""
        with self._lock:
            meeting = self.meetings[int(meeting_id)]
            if not meeting.instances:
                raise LookupError(f"meeting {meeting_id} never ran")
            instance = meeting.instances[-1]
            return meeting_ended_event(
                account_id="sandbox-account",
                meeting_id=meeting.id,
                uuid=instance.uuid,
                host_id=meeting.host_id,
                topic=meeting.topic,
                start=instance.start,
                end=instance.end,
                timezone=meeting.timezone,
                duration=meeting.duration,
            )

    def post_meeting_ended(
        self,
        url: str,
        meeting_id: int | str,
        *,
        secret: str,
        timestamp: int | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """POST a signed ``meeting.ended`` webhook to ``url``, as Zoom would."""
        body = json.dumps(self.meeting_ended_event(meeting_id), separators=(",", ":")).encode()
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-zm-request-timestamp": stamp,
            "x-zm-signature": sign_webhook(secret, stamp, body),
        }
        if client is not None:
            return client.post(url, content=body, headers=headers)
        with httpx.Client() as own:
            return own.post(url, content=body, headers=headers)


def meeting_ended_event(
    *,
    account_id: str,
    meeting_id: int,
    uuid: str,
    host_id: str,
    topic: str,
    start: datetime,
    end: datetime,
    timezone: str,
    duration: int,
    event_ts: int | None = None,
) -> dict[str, Any]:
    """Zoom's ``meeting.ended`` event body (https://developers.zoom.us/docs/api/meetings/events/)."""
    return {
        "event": "meeting.ended",
        "event_ts": event_ts if event_ts is not None else int(end.timestamp() * 1000),
        "payload": {
            "account_id": account_id,
            "object": {
                "id": str(meeting_id),
                "uuid": uuid,
                "host_id": host_id,
                "topic": topic,
                "type": 2,
                "start_time": _zoom_time(start),
                "end_time": _zoom_time(end),
                "timezone": timezone,
                "duration": duration,
            },
        },
    }


def _token(offset: int, key: str) -> str:
    mac = hashlib.sha256(f"{key}:{offset}".encode()).hexdigest()[:8]
    return base64.urlsafe_b64encode(f"{offset}:{mac}".encode()).decode().rstrip("=")


def _offset(token: str, key: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset_text, _, mac = raw.partition(":")
        offset = int(offset_text)
    except ValueError:
        return None
    return offset if hmac.compare_digest(_token(offset, key), token) and mac else None
