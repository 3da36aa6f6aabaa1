"""The GoTo Meeting REST API emulator (``/G2M/rest/v2``) and GoTo's OAuth token endpoint.

Served paths (GoTo Meeting REST API reference; the OpenAPI description published at
https://developer.citrixonline.com/sites/default/files/citrix/citrix-apis/gotomeeting.json):

=======================================================  =======================================
``POST   /oauth/token``                                  ``grant_type=refresh_token`` (Basic
                                                         client credentials)
``GET    /G2M/rest/v2/organizers?email=``                the organizer with that address
``POST   /G2M/rest/v2/meetings``                         create (201, a one-element array)
``GET    /G2M/rest/v2/meetings/{meetingId}``             one meeting (a one-element array)
``PUT    /G2M/rest/v2/meetings/{meetingId}``             update (204)
``DELETE /G2M/rest/v2/meetings/{meetingId}``             delete (204)
``GET    /G2M/rest/v2/upcomingMeetings``                 the token's organizer's meetings
``GET    /G2M/rest/v2/historicalMeetings``               the token's organizer's sessions that
                                                         started in ``startDate``..``endDate``
``GET    /G2M/rest/v2/organizers/{organizerKey}/historicalMeetings``  the same, any organizer
``GET    /G2M/rest/v2/meetings/{meetingId}/attendees``   attendees of every session; 404 for a
                                                         meeting that was never held
``GET    /G2M/rest/v2/organizers/{organizerKey}/attendees``  attendees of every session that
                                                         started in ``startDate``..``endDate``
=======================================================  =======================================

GoTo does not page these lists: they are bare JSON arrays. Historical meetings are one row
per session (``sessionId``); a session still running is not listed yet ("Meetings which are
still ongoing at the time of the request are NOT contained in the result array"). Attendee
rows carry the session as ``meetingInstanceKey``. GoTo documents no "sessions of a meeting"
or "attendees of one session" call: a meeting's sessions are its historical rows, a
session's attendees are its meeting's attendee rows with that ``meetingInstanceKey``.
Errors are GoTo's ``{"int_err_code", "msg"}`` bodies (401 ``InvalidToken``, 404 ``NotFound``,
400 ``InvalidRequest``, 429 ``TooManyRequests`` with ``Retry-After``).

A meeting created over the API belongs to the token's organizer: the token's subject when it
is an organizer's address, else the account's first organizer.
"""

from __future__ import annotations

import html
import itertools
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crm_meetings.sandbox.base import FaultKind, SandboxEnv
from crm_meetings.sandbox.seed import SeedData, SeedParticipant

__all__ = ["API", "GoToEmulator"]

VENDOR: Final = "goto"
API: Final = "/G2M/rest/v2"
MAX_SUBJECT: Final = 100
FIRST_ORGANIZER_KEY: Final = 3_697_511_743_350_317_000
FIRST_NEW_MEETING_ID: Final = 700_000_000
ACCOUNT_KEY: Final = "7208950178093442318"
CONFERENCE_CALL_INFO: Final = "US: +1 (571) 317-3112\nAccess Code: {code}"


def _goto_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"int_err_code": code, "msg": message}, status, headers=headers)


class _Invalid(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise _Invalid(f"{name} is required (ISO8601 UTC, e.g. 2015-07-01T22:00:00Z)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(f"{name} {value!r} is not an ISO8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class _Organizer:
    key: int
    email: str
    first_name: str
    last_name: str

    def to_json(self) -> dict[str, Any]:
        return {
            "organizerKey": self.key,
            "groupId": 1,
            "groupName": "Sales",
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "maxNumAttendeesAllowed": 250,
            "products": ["G2M"],
            "status": "active",
        }


@dataclass
class _Attendee:
    name: str
    email: str
    join: datetime
    leave: datetime


@dataclass
class _Session:
    key: int  # sessionId in historical meetings, meetingInstanceKey in attendee rows
    start: datetime
    end: datetime
    attendees: list[_Attendee]


@dataclass
class _Meeting:
    id: int
    organizer: _Organizer
    subject: str
    start: datetime
    end: datetime
    join_url: str
    conference_call_info: str
    password_required: bool = False
    deleted: bool = False
    sessions: list[_Session] = field(default_factory=list)
    _upcoming: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_upcoming":  # any change of a field: the list row is formatted again
            object.__setattr__(self, "_upcoming", None)

    def by_id(self) -> dict[str, Any]:
        return {
            "meetingId": self.id,
            "meetingKey": self.id,
            "uniqueMeetingId": self.id,
            "subject": self.subject,
            "startTime": _goto_time(self.start),
            "endTime": _goto_time(self.end),
            "duration": int((self.end - self.start).total_seconds() // 60),
            "status": "INACTIVE",
            "meetingType": "scheduled",
            "passwordRequired": self.password_required,
            "conferenceCallInfo": self.conference_call_info,
            "maxParticipants": 250,
            "createTime": "",
        }

    def upcoming(self) -> dict[str, Any]:
        """The meeting's row in upcomingMeetings (formatted once per change of the meeting)."""
        if self._upcoming is None:
            self._upcoming = self._format_upcoming()
        return dict(self._upcoming)

    def _format_upcoming(self) -> dict[str, Any]:
        return {
            "meetingId": str(self.id),
            "subject": self.subject,
            "startTime": _goto_time(self.start),
            "endTime": _goto_time(self.end),
            "status": "INACTIVE",
            "meetingType": "scheduled",
            "passwordRequired": self.password_required,
            "conferenceCallInfo": self.conference_call_info,
            "organizerKey": str(self.organizer.key),
            "accountKey": ACCOUNT_KEY,
            "email": self.organizer.email,
            "firstName": self.organizer.first_name,
            "lastName": self.organizer.last_name,
            "locale": "en_US",
        }

    def historical(self, session: _Session) -> dict[str, Any]:
        return {
            "meetingId": str(self.id),
            "sessionId": str(session.key),
            "subject": self.subject,
            "startTime": _goto_time(session.start),
            "endTime": _goto_time(session.end),
            "duration": str(int((session.end - session.start).total_seconds() // 60)),
            "numAttendees": str(len(session.attendees)),
            "meetingType": "scheduled",
            "conferenceCallInfo": self.conference_call_info,
            "organizerKey": str(self.organizer.key),
            "accountKey": ACCOUNT_KEY,
            "email": self.organizer.email,
            "firstName": self.organizer.first_name,
            "lastName": self.organizer.last_name,
            "locale": "en_US",
        }

    def attendee(self, session: _Session, person: _Attendee) -> dict[str, Any]:
        return {
            "attendeeName": person.name,
            "name": person.name,
            "attendeeEmail": person.email,
            "joinTime": _goto_time(person.join),
            "leaveTime": _goto_time(person.leave),
            "duration": int((person.leave - person.join).total_seconds() // 60),
            "meetingId": self.id,
            "meetingInstanceKey": session.key,
            "subject": self.subject,
            "startTime": _goto_time(session.start),
            "endTime": _goto_time(session.end),
            "numAttendees": len(session.attendees),
            "meetingType": "scheduled",
            "conferenceCallInfo": self.conference_call_info,
            "organizerkey": self.organizer.key,
            "email": self.organizer.email,
            "firstName": self.organizer.first_name,
            "lastName": self.organizer.last_name,
            "groupName": "NA",
        }

    def organizer_attendee(self, session: _Session, person: _Attendee) -> dict[str, Any]:
        """An ``AttendeeByOrganizer`` row: ``name`` is the organizer's, with their group."""
        organizer = self.organizer
        return {
            **self.attendee(session, person),
            "name": f"{organizer.first_name} {organizer.last_name}".strip(),
            "newMeetingId": _access(self.id),
            "groupName": organizer.to_json()["groupName"],
        }


class GoToEmulator:
    """GoTo Meeting's organizers, meetings, sessions and attendees, in memory."""

    name = VENDOR

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.organizers: dict[int, _Organizer] = {}
        self.meetings: dict[int, _Meeting] = {}
        # organizer key -> the organizer's meetings not deleted, by (start, id); rebuilt after
        # a change (load, create, update, delete), not sorted again for every request
        self._organized: dict[int, list[_Meeting]] = {}
        self._ids = itertools.count(FIRST_NEW_MEETING_ID)
        self._env: SandboxEnv | None = None

    # --- VendorEmulator -----------------------------------------------------------------

    def fault_response(self, kind: FaultKind, *, retry_after: float) -> Response:
        if kind is FaultKind.RATE_LIMITED:
            return _error(
                429,
                "TooManyRequests",
                "The rate limit was exceeded. Retry later.",
                **{"Retry-After": f"{retry_after:g}"},
            )
        if kind is FaultKind.UNAUTHORIZED:
            return _error(401, "InvalidToken", "Invalid token passed")
        return _error(500, "InternalServerError", "An internal error occurred.")

    def load(self, data: Any) -> None:
        """Seed organizers (every seed user) and the seed's GoTo meetings and sessions."""
        assert isinstance(data, SeedData)
        with self._lock:
            for seed_user in data.users:
                self._add_organizer(seed_user.email, seed_user.name)
            for seeded in data.meetings:
                if seeded.provider != VENDOR:
                    continue
                organizer = self._organizer(data.user(seeded.organizer).email)
                assert organizer is not None
                meeting_id = int(seeded.provider_meeting_id)
                self.meetings[meeting_id] = _Meeting(
                    id=meeting_id,
                    organizer=organizer,
                    subject=seeded.subject[:MAX_SUBJECT],
                    start=seeded.start,
                    end=seeded.end,
                    join_url=seeded.join_url,
                    conference_call_info=CONFERENCE_CALL_INFO.format(code=_access(meeting_id)),
                )
                self._organized.clear()
                for session in seeded.sessions:
                    self.record_session(
                        meeting_id, session.start, session.end, session.participants
                    )

    def state(self) -> Mapping[str, Any]:
        with self._lock:
            return {
                "organizers": [o.to_json() for o in self.organizers.values()],
                "meetings": {
                    str(m.id): {
                        **m.by_id(),
                        "joinURL": m.join_url,
                        "organizerEmail": m.organizer.email,
                        "deleted": m.deleted,
                        "sessions": [
                            {
                                **m.historical(s),
                                "attendees": [m.attendee(s, a) for a in s.attendees],
                            }
                            for s in m.sessions
                        ],
                    }
                    for m in self.meetings.values()
                },
            }

    # --- helpers for tests --------------------------------------------------------------

    def record_session(
        self,
        meeting_id: int | str,
        start: datetime,
        end: datetime,
        participants: Sequence[SeedParticipant],
    ) -> str:
        """Add a session (the meeting was held from ``start`` to ``end``); returns its id."""
        with self._lock:
            meeting = self.meetings[int(meeting_id)]
            key = meeting.id * 100 + len(meeting.sessions) + 1
            attendees = [_Attendee(p.name, p.email or "", p.join, p.leave) for p in participants]
            meeting.sessions.append(_Session(key, start, end, attendees))
            return str(key)

    def organizer_key(self, email: str) -> int:
        with self._lock:
            found = self._organizer(email)
            if found is None:
                raise LookupError(email)
            return found.key

    # --- lookups ------------------------------------------------------------------------

    def _add_organizer(self, email: str, name: str) -> _Organizer:
        first, _, last = name.partition(" ")
        organizer = _Organizer(FIRST_ORGANIZER_KEY + len(self.organizers), email, first, last)
        self.organizers[organizer.key] = organizer
        return organizer

    def _organizer(self, email: str) -> _Organizer | None:
        wanted = email.strip().lower()
        return next((o for o in self.organizers.values() if o.email == wanted), None)

    def _meeting(self, meeting_id: str) -> _Meeting | None:
        if not meeting_id.isdigit():
            return None
        found = self.meetings.get(int(meeting_id))
        return None if found is None or found.deleted else found

    # --- the app ------------------------------------------------------------------------

    def build_app(self, env: SandboxEnv) -> Starlette:
        self._env = env
        routes = [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route(f"{API}/organizers", self._organizers, methods=["GET"]),
            Route(f"{API}/meetings", self._create, methods=["POST"]),
            Route(f"{API}/meetings/{{meetingId}}", self._get, methods=["GET"]),
            Route(f"{API}/meetings/{{meetingId}}", self._update, methods=["PUT"]),
            Route(f"{API}/meetings/{{meetingId}}", self._delete, methods=["DELETE"]),
            Route(f"{API}/upcomingMeetings", self._upcoming, methods=["GET"]),
            Route(f"{API}/historicalMeetings", self._historical, methods=["GET"]),
            Route(
                f"{API}/organizers/{{organizerKey}}/historicalMeetings",
                self._historical,
                methods=["GET"],
            ),
            Route(f"{API}/meetings/{{meetingId}}/attendees", self._attendees, methods=["GET"]),
            Route(
                f"{API}/organizers/{{organizerKey}}/attendees",
                self._organizer_attendees,
                methods=["GET"],
            ),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, _Invalid: self._invalid},
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _error(404, "NotFound", "The requested resource was not found.")
        return _error(exc.status_code, "InvalidRequest", str(exc.detail))

    async def _invalid(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Invalid)
        return _error(400, "InvalidRequest", exc.message)

    def _principal(self, request: Request) -> _Organizer | None:
        """The token's organizer (the account's first one for an admin token), else None."""
        assert self._env is not None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._env.tokens.check(VENDOR, token):
            return None
        subject = self._env.tokens.subject(token) or ""
        with self._lock:
            return self._organizer(subject) or next(iter(self.organizers.values()), None)

    @staticmethod
    def _unauthorized() -> Response:
        return _error(401, "InvalidToken", "Invalid token passed")

    # OAuth (authentication.logmeininc.com)

    async def _token(self, request: Request) -> Response:
        assert self._env is not None
        form = await request.form()
        if form.get("grant_type") != "refresh_token":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Use refresh_token."},
                400,
            )
        if not request.headers.get("authorization", "").lower().startswith("basic "):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                401,
            )
        refresh = str(form.get("refresh_token", ""))
        access = self._env.tokens.refresh(VENDOR, refresh) if refresh else None
        if access is None:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Invalid refresh token"}, 400
            )
        principal = self._env.tokens.subject(access) or ""
        with self._lock:
            organizer = self._organizer(principal) or next(iter(self.organizers.values()), None)
        return JSONResponse(
            {
                "access_token": access,
                "token_type": "Bearer",
                "refresh_token": refresh,
                "expires_in": 3600,
                "scope": "collab:",
                "principal": organizer.email if organizer else principal,
                "organizer_key": str(organizer.key) if organizer else "",
                "account_key": ACCOUNT_KEY,
            }
        )

    # organizers and meetings

    async def _organizers(self, request: Request) -> Response:
        if self._principal(request) is None:
            return self._unauthorized()
        email = request.query_params.get("email")
        with self._lock:
            if email is None:
                return JSONResponse([o.to_json() for o in self.organizers.values()])
            found = self._organizer(email)
            if found is None:
                return _error(404, "NotFound", f"No organizer with email {email}")
            return JSONResponse([found.to_json()])

    @staticmethod
    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise _Invalid("The request body is not JSON.") from None
        if not isinstance(body, dict):
            raise _Invalid("The request body must be a JSON object.")
        return body

    @staticmethod
    def _fields(body: Mapping[str, Any]) -> tuple[str, datetime, datetime, bool, str]:
        missing = [
            name
            for name in ("subject", "starttime", "endtime", "passwordrequired",
                         "conferencecallinfo", "timezonekey", "meetingtype")
            if name not in body
        ]  # fmt: skip
        if missing:
            raise _Invalid(f"Missing required fields: {', '.join(missing)}")
        subject = body["subject"]
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT:
            raise _Invalid(f"subject must be 1 to {MAX_SUBJECT} characters")
        if "<" in subject or ">" in subject:
            raise _Invalid("subject must encode '<' and '>' as &lt; and &gt;")
        start = _parse_time(body["starttime"], "starttime")
        end = _parse_time(body["endtime"], "endtime")
        if end <= start:
            raise _Invalid("endtime must be after starttime")
        return (
            html.unescape(subject),
            start,
            end,
            bool(body["passwordrequired"]),
            str(body["conferencecallinfo"]),
        )

    async def _create(self, request: Request) -> Response:
        organizer = self._principal(request)
        if organizer is None:
            return self._unauthorized()
        subject, start, end, password, audio = self._fields(await self._body(request))
        with self._lock:
            meeting_id = next(self._ids)
            info = CONFERENCE_CALL_INFO.format(code=_access(meeting_id))
            meeting = _Meeting(
                id=meeting_id,
                organizer=organizer,
                subject=subject,
                start=start,
                end=end,
                join_url=f"https://meet.goto.example.com/{meeting_id}",
                conference_call_info=info if audio in ("Hybrid", "PSTN", "Free") else audio,
                password_required=password,
            )
            self.meetings[meeting_id] = meeting
            self._organized.clear()
        return JSONResponse(
            [
                {
                    "joinURL": meeting.join_url,
                    "meetingid": meeting.id,
                    "uniqueMeetingId": meeting.id,
                    "maxParticipants": 250,
                    "conferenceCallInfo": meeting.conference_call_info,
                }
            ],
            201,
        )

    async def _get(self, request: Request) -> Response:
        if self._principal(request) is None:
            return self._unauthorized()
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _error(404, "NotFound", "Meeting not found")
            return JSONResponse([meeting.by_id()])

    async def _update(self, request: Request) -> Response:
        if self._principal(request) is None:
            return self._unauthorized()
        subject, start, end, password, _ = self._fields(await self._body(request))
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _error(404, "NotFound", "Meeting not found")
            meeting.subject, meeting.start, meeting.end = subject, start, end
            meeting.password_required = password
            self._organized.clear()
        return Response(status_code=204)

    async def _delete(self, request: Request) -> Response:
        if self._principal(request) is None:
            return self._unauthorized()
        with self._lock:
            meeting = self._meeting(request.path_params["meetingId"])
            if meeting is None:
                return _error(404, "NotFound", "Meeting not found")
            meeting.deleted = True
            self._organized.clear()
        return Response(status_code=204)

    async def _upcoming(self, request: Request) -> Response:
        organizer = self._principal(request)
        if organizer is None:
            return self._unauthorized()
        assert self._env is not None
        now = self._env.clock()
        with self._lock:
            rows = [m.upcoming() for m in self._organized_by(organizer) if m.end >= now]
        return JSONResponse(rows)

    def _organized_by(self, organizer: _Organizer) -> list[_Meeting]:
        """The organizer's meetings not deleted, by (start, id), indexed once per change."""
        with self._lock:
            if not self._organized:
                for meeting in self.meetings.values():
                    if not meeting.deleted:
                        self._organized.setdefault(meeting.organizer.key, []).append(meeting)
                for organized in self._organized.values():
                    organized.sort(key=lambda m: (m.start, m.id))
            return self._organized.get(organizer.key, [])

    def _scope(self, request: Request) -> tuple[_Organizer, datetime, datetime] | Response:
        """The organizer (the path's, else the token's) and the ``startDate``..``endDate``
        window of a history request, or the error response."""
        principal = self._principal(request)
        if principal is None:
            return self._unauthorized()
        organizer = principal
        if "organizerKey" in request.path_params:
            key = request.path_params["organizerKey"]
            found = self.organizers.get(int(key)) if key.isdigit() else None
            if found is None:
                return _error(404, "NotFound", f"Organizer {key} not found")
            organizer = found
        first = _parse_time(request.query_params.get("startDate"), "startDate")
        last = _parse_time(request.query_params.get("endDate"), "endDate")
        if last < first:
            raise _Invalid("endDate must not be before startDate")
        return organizer, first, last

    def _held(
        self, organizer: _Organizer, first: datetime, last: datetime
    ) -> list[tuple[_Meeting, _Session]]:
        """The organizer's sessions that started in ``first``..``last``, by (start, key)."""
        with self._lock:
            held = [
                (meeting, session)
                for meeting in self.meetings.values()
                if meeting.organizer is organizer
                for session in meeting.sessions
                if first <= session.start <= last
            ]
        return sorted(held, key=lambda pair: (pair[1].start, pair[1].key))

    async def _historical(self, request: Request) -> Response:
        scope = self._scope(request)
        if isinstance(scope, Response):
            return scope
        assert self._env is not None
        now = self._env.clock()
        return JSONResponse(
            [m.historical(s) for m, s in self._held(*scope) if s.end <= now]  # not ongoing
        )

    async def _organizer_attendees(self, request: Request) -> Response:
        scope = self._scope(request)
        if isinstance(scope, Response):
            return scope
        return JSONResponse(
            [m.organizer_attendee(s, a) for m, s in self._held(*scope) for a in s.attendees]
        )

    async def _attendees(self, request: Request) -> Response:
        if self._principal(request) is None:
            return self._unauthorized()
        key = request.path_params["meetingId"]
        with self._lock:
            meeting = self.meetings.get(int(key)) if key.isdigit() else None
            if meeting is None or not meeting.sessions:
                return _error(404, "NotFound", f"No historical meeting found for {key}")
            rows = [meeting.attendee(s, a) for s in meeting.sessions for a in s.attendees]
        return JSONResponse(rows)


def _access(meeting_id: int) -> str:
    digits = f"{meeting_id:09d}"[-9:]
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
