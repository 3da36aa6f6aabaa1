"""Zoom (API v2) as a :class:`~crm_meetings.conferencing.base.ConferencingProvider`.

- Auth: Server-to-Server OAuth (``account_credentials``); the token is refreshed on a 401.
- Users: a CRM user's e-mail is their Zoom ``userId`` unless ``users`` maps it to an id.
- Meetings ran: ``GET /v2/report/users/{userId}/meetings`` (instances in a date range of at
  most one month, so longer windows are cut; ``next_page_token`` paging, 300 per page).
- Sessions: the report's rows are instances with their UUID, start and end (Zoom's
  ``ReportsGetMeetingReportsResponse``:
  https://zoom.github.io/rivet-javascript/types/Meetings.ReportsGetMeetingReportsResponse.html,
  and ``recordings/zoom/report_user_meetings.json``), so a sync reads only
  ``GET /v2/report/meetings/{uuid}/participants`` per instance. A single meeting ("sync
  now") reads ``GET /v2/past_meetings/{meetingId}/instances`` (empty: never started), then
  per instance its details (the end time) and its participants.
- UUIDs in paths go through :func:`encode_uuid` (Zoom's double-encoding rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from crm_meetings.conferencing._http import ApiClient, Encoded, ErrorShape, HttpSettings
from crm_meetings.conferencing._values import iso_z, parse_time, participant, windows
from crm_meetings.conferencing.base import CheckResult, Instance, ProviderMeeting, RanMeeting
from crm_meetings.conferencing.oauth import AccountCredentials
from crm_meetings.conferencing.paging import token_pages
from crm_meetings.errors import CrmMeetingsError, NoSessionExistsError, NotFoundError
from crm_meetings.model import Meeting, Participant, Session
from crm_meetings.transport import CallCounter

__all__ = ["API_URL", "TOKEN_URL", "ZoomProvider", "encode_uuid"]

VENDOR: Final = "zoom"
API_URL: Final = "https://api.zoom.us"
TOKEN_URL: Final = "https://zoom.us/oauth/token"  # noqa: S105
PAGE_SIZE: Final = 300
REPORT_WINDOW_DAYS: Final = 30
MAX_TOPIC: Final = 200
MAX_AGENDA: Final = 2000
ERRORS: Final = ErrorShape(
    code_keys=("code",),
    message_keys=("message",),
    request_id_header="x-zm-trackingid",
    field_list_key="errors",
)

USER_MEETINGS: Final = "/v2/users/{userId}/meetings"
MEETING: Final = "/v2/meetings/{meetingId}"
USER: Final = "/v2/users/{userId}"
INSTANCES: Final = "/v2/past_meetings/{meetingId}/instances"
PAST_MEETING: Final = "/v2/past_meetings/{meetingId}"
PARTICIPANTS: Final = "/v2/report/meetings/{meetingId}/participants"
USER_REPORT: Final = "/v2/report/users/{userId}/meetings"


def encode_uuid(uuid: str) -> str:
    """A meeting UUID as a path segment: double-encoded when it starts with ``/`` or
    contains ``//`` (Zoom's rule), single-encoded otherwise. Numeric ids pass unchanged."""
    once = quote(uuid, safe="")
    if uuid.startswith("/") or "//" in uuid:
        return quote(once, safe="")
    return once


def _meeting_body(meeting: Meeting) -> dict[str, Any]:
    return {
        "topic": meeting.subject[:MAX_TOPIC],
        "start_time": iso_z(meeting.start),
        "duration": max(1, math.ceil(meeting.duration.total_seconds() / 60)),
        "timezone": meeting.timezone,
        "agenda": meeting.description[:MAX_AGENDA],
    }


def _provider_meeting(created: Mapping[str, Any]) -> ProviderMeeting:
    """A meeting as Zoom answers a create or a read of it."""
    numbers = created.get("settings", {}).get("global_dial_in_numbers", [])
    return ProviderMeeting(
        provider=VENDOR,
        id=str(created["id"]),
        join_url=str(created["join_url"]),
        dial_in=tuple(
            f"{n.get('country_name') or n.get('country')}: {n['number']}"
            for n in numbers
            if isinstance(n, Mapping) and n.get("number")
        ),
        password=created.get("password") or None,
    )


def _uuid_segment(uuid: str) -> dict[str, str]:
    return {"meetingId": Encoded(encode_uuid(uuid))}


class _Listed:
    """One meeting's rows in the report listing, gathered while it is read."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.first_start: datetime | None = None
        self.instances: dict[str, Instance] = {}
        self.complete = True  # every row had its UUID and end

    def add(self, row: Mapping[str, Any], started: datetime) -> None:
        if self.first_start is None or started < self.first_start:
            self.first_start = started
        uuid, ended = row.get("uuid"), row.get("end_time")
        if not uuid or not ended:
            self.complete = False
            return
        self.instances.setdefault(
            str(uuid), Instance(str(uuid), started, parse_time(ended, "end_time"))
        )

    def ran(self, meeting_id: str) -> RanMeeting:
        assert self.first_start is not None  # a _Listed exists once a row was added
        instances = sorted(self.instances.values(), key=lambda i: (i.start, i.id))
        return RanMeeting(
            VENDOR,
            meeting_id,
            self.topic,
            self.first_start,
            instances=tuple(instances) if self.complete else (),
        )


class ZoomProvider:
    """Zoom meetings and their history, over httpx."""

    name = VENDOR

    def __init__(
        self,
        credentials: AccountCredentials,
        settings: HttpSettings | None = None,
        *,
        users: Mapping[str, str] | None = None,
        calls: CallCounter | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        """``settings``: URLs, TLS, timeout, retry policy (default: Zoom's cloud).
        ``page_size`` (at most Zoom's 300) is for tests that want several pages."""
        settings = settings or HttpSettings(api_url=API_URL, token_url=TOKEN_URL)
        self.api = ApiClient(VENDOR, settings, credentials, ERRORS, calls=calls)
        self.calls = self.api.calls
        self.users = {email.lower(): user for email, user in (users or {}).items()}
        self.page_size = max(1, min(page_size, PAGE_SIZE))

    def close(self) -> None:
        self.api.close()

    def user_id(self, email: str) -> str:
        """The Zoom ``userId`` for a CRM user: the mapped id, else the e-mail itself."""
        return self.users.get(email.lower(), email.lower())

    # --- actions ------------------------------------------------------------------------

    def create_meeting(self, meeting: Meeting) -> ProviderMeeting:
        body = {
            **_meeting_body(meeting),
            "type": 2,  # scheduled
            "settings": {"join_before_host": False, "waiting_room": True, "audio": "both"},
        }
        response = self.api.call(
            "POST",
            USER_MEETINGS,
            path={"userId": self.user_id(meeting.organizer.email)},
            json=body,
            idempotent=False,
        )
        return _provider_meeting(response.json())

    def find_created(self, meeting: Meeting) -> list[ProviderMeeting]:
        """The host's scheduled meetings with the topic, start and duration a create of
        ``meeting`` sends, each read in full (the list carries no dial-in numbers)."""
        sent = _meeting_body(meeting)
        user = self.user_id(meeting.organizer.email)

        def fetch(token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            params: dict[str, str | int] = {"type": "scheduled", "page_size": self.page_size}
            if token:
                params["next_page_token"] = token
            page = self.api.call("GET", USER_MEETINGS, path={"userId": user}, params=params)
            body = page.json()
            return list(body.get("meetings", [])), body.get("next_page_token") or None

        found: list[ProviderMeeting] = []
        for row in token_pages(fetch, vendor=VENDOR):
            same = (
                row.get("topic") == sent["topic"]
                and row.get("duration") == sent["duration"]
                and parse_time(row.get("start_time"), "start_time") == meeting.start
            )
            if same:
                details = self.api.call("GET", MEETING, path={"meetingId": str(row["id"])})
                found.append(_provider_meeting(details.json()))
        return found

    def update_meeting(self, provider_meeting_id: str, meeting: Meeting) -> None:
        self.api.call(
            "PATCH", MEETING, path={"meetingId": provider_meeting_id}, json=_meeting_body(meeting)
        )

    def cancel_meeting(self, provider_meeting_id: str) -> None:
        self._delete(provider_meeting_id, notify=True)

    def delete_meeting(self, provider_meeting_id: str) -> None:
        self._delete(provider_meeting_id, notify=False)

    def _delete(self, provider_meeting_id: str, *, notify: bool) -> None:
        flag = "true" if notify else "false"
        try:
            self.api.call(
                "DELETE",
                MEETING,
                path={"meetingId": provider_meeting_id},
                params={"schedule_for_reminder": flag, "cancel_meeting_reminder": flag},
            )
        except NotFoundError:
            return  # already gone: the outcome the caller wants

    # --- history ------------------------------------------------------------------------

    def meetings_ran(
        self, organizer_email: str, since: datetime, until: datetime
    ) -> Iterator[RanMeeting]:
        """Read the whole report listing first: its rows are instances, each with its UUID,
        start and end, so every meeting comes with the instances it had in the window."""
        user = self.user_id(organizer_email)
        found: dict[str, _Listed] = {}
        for start, end in windows(since, until, timedelta(days=REPORT_WINDOW_DAYS)):
            # report dates are whole UTC days, both ends inclusive; filter to the instant
            for row in token_pages(self._report_pages(user, start, end), vendor=VENDOR):
                started = parse_time(row.get("start_time"), "start_time")
                if since <= started < until:
                    meeting_id = str(row.get("id"))
                    listed = found.setdefault(meeting_id, _Listed(str(row.get("topic", ""))))
                    listed.add(row, started)
        ran = (listed.ran(meeting_id) for meeting_id, listed in found.items())
        yield from sorted(ran, key=lambda meeting: meeting.first_start)

    def _report_pages(
        self, user: str, start: datetime, end: datetime
    ) -> Callable[[str | None], tuple[list[dict[str, Any]], str | None]]:
        last_day = (end - timedelta(microseconds=1)).date()

        def fetch(token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            params: dict[str, str | int] = {
                "type": "past",
                "from": start.date().isoformat(),
                "to": last_day.isoformat(),
                "page_size": self.page_size,
            }
            if token:
                params["next_page_token"] = token
            body = self.api.call("GET", USER_REPORT, path={"userId": user}, params=params)
            page = body.json()
            return list(page.get("meetings", [])), page.get("next_page_token") or None

        return fetch

    def sessions(
        self, provider_meeting_id: str, *, listed: RanMeeting | None = None
    ) -> list[Session]:
        """From ``listed``'s instances when it has them (one participants read each);
        else the meeting's instance list, then each instance's details (its end) and
        participants."""
        if listed is not None and listed.id == provider_meeting_id and listed.instances:
            return [
                self._session(provider_meeting_id, i.id, i.start, i.end) for i in listed.instances
            ]
        found = self.api.call("GET", INSTANCES, path={"meetingId": provider_meeting_id}).json()
        instances = sorted(found.get("meetings", []), key=lambda i: parse_time(i.get("start_time")))
        if not instances:
            raise NoSessionExistsError(provider_meeting_id)
        sessions = []
        for instance in instances:
            uuid = str(instance["uuid"])
            details = self.api.call("GET", PAST_MEETING, path=_uuid_segment(uuid)).json()
            start = parse_time(details.get("start_time"), "start_time")
            end = parse_time(details.get("end_time"), "end_time")
            sessions.append(self._session(provider_meeting_id, uuid, start, end))
        return sessions

    def _session(self, meeting_id: str, uuid: str, start: datetime, end: datetime) -> Session:
        segment = _uuid_segment(uuid)
        people = token_pages(lambda token: self._participants_page(segment, token), vendor=VENDOR)
        return Session(
            provider=VENDOR,
            provider_session_id=uuid,
            provider_meeting_id=meeting_id,
            start=start,
            end=end,
            participants=tuple(people),
        )

    def _participants_page(
        self, segment: Mapping[str, str], token: str | None
    ) -> tuple[list[Participant], str | None]:
        params: dict[str, str | int] = {"page_size": self.page_size}
        if token:
            params["next_page_token"] = token
        body = self.api.call("GET", PARTICIPANTS, path=segment, params=params).json()
        people = [
            participant(
                p.get("name"),
                p.get("user_email"),
                parse_time(p.get("join_time"), "join_time"),
                parse_time(p.get("leave_time"), "leave_time"),
                p.get("duration") if isinstance(p.get("duration"), int) else None,
            )
            for p in body.get("participants", [])
        ]
        return people, body.get("next_page_token") or None

    # --- doctor -------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = []
        try:
            self.api.refresh()
            results.append(CheckResult("zoom: credentials", True, "access token issued"))
        except CrmMeetingsError as error:
            return [CheckResult("zoom: credentials", False, error.message, error.hint)]
        try:
            me = self.api.call("GET", USER, path={"userId": "me"}).json()
            results.append(CheckResult("zoom: API", True, f"reached as {me.get('email', '?')}"))
        except CrmMeetingsError as error:
            results.append(CheckResult("zoom: API", False, error.message, error.hint))
        return results
