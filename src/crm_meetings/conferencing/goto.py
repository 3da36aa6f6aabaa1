"""GoTo Meeting (REST API ``/G2M/rest/v2``) as a
:class:`~crm_meetings.conferencing.base.ConferencingProvider`.

- Auth: an OAuth refresh token (GoTo may rotate it: ``RefreshTokenGrant.on_rotate``).
- Meetings are created for the organizer the token belongs to (GoTo has no "create for
  another organizer"); history is read for any organizer, found by e-mail
  (``GET /organizers?email=``, cached) unless ``organizer_keys`` maps the address.
- Meetings ran: ``GET /organizers/{organizerKey}/historicalMeetings`` — one row per session,
  not paged.
- Sessions: ``GET /meetings/{meetingId}/attendees``, grouped by ``meetingInstanceKey``. GoTo
  answers 404 for a meeting that was never held; one ``GET /meetings/{meetingId}`` then tells
  "never started" (NoSessionExistsError) from "does not exist" (NotFoundError).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Final

from crm_meetings.conferencing._http import ApiClient, ErrorShape, HttpSettings
from crm_meetings.conferencing._values import iso_z, parse_time, participant
from crm_meetings.conferencing.base import CheckResult, ProviderMeeting, RanMeeting
from crm_meetings.conferencing.oauth import RefreshTokenGrant
from crm_meetings.errors import CrmMeetingsError, NoSessionExistsError, NotFoundError
from crm_meetings.model import Meeting, Session
from crm_meetings.transport import CallCounter

__all__ = ["API_URL", "TOKEN_URL", "GoToProvider", "goto_subject"]

VENDOR: Final = "goto"
API_URL: Final = "https://api.getgo.com"
TOKEN_URL: Final = "https://authentication.logmeininc.com/oauth/token"  # noqa: S105
MAX_SUBJECT: Final = 100
ERRORS: Final = ErrorShape(
    code_keys=("int_err_code", "errorCode"), message_keys=("msg", "description")
)

API: Final = "/G2M/rest/v2"
MEETINGS: Final = f"{API}/meetings"
MEETING: Final = f"{API}/meetings/{{meetingId}}"
ATTENDEES: Final = f"{API}/meetings/{{meetingId}}/attendees"
ORGANIZERS: Final = f"{API}/organizers"
HISTORY: Final = f"{API}/organizers/{{organizerKey}}/historicalMeetings"
UPCOMING: Final = f"{API}/upcomingMeetings"
#: the join link of a meeting, as GoTo's create answer shows it (recordings/goto/
#: create_meeting.json); a meeting found again by :meth:`GoToProvider.find_created` has
#: no answer of its own to read it from (MeetingById and upcomingMeetings carry none)
JOIN_URL: Final = "https://global.gotomeeting.com/join/{meetingId}"


def goto_subject(subject: str) -> str:
    """The subject as GoTo takes it: ``<`` and ``>`` as entities, at most 100 characters."""
    out = ""
    for char in subject:
        piece = html.escape(char, quote=False) if char in "<>" else char
        if len(out) + len(piece) > MAX_SUBJECT:
            break
        out += piece
    return out


def _meeting_body(meeting: Meeting) -> dict[str, Any]:
    return {
        "subject": goto_subject(meeting.subject),
        "starttime": iso_z(meeting.start),
        "endtime": iso_z(meeting.end),
        "passwordrequired": False,
        "conferencecallinfo": "Hybrid",
        "timezonekey": "",
        "meetingtype": "scheduled",
    }


class GoToProvider:
    """GoTo Meeting meetings and their history, over httpx."""

    name = VENDOR

    def __init__(
        self,
        grant: RefreshTokenGrant,
        settings: HttpSettings | None = None,
        *,
        organizer_keys: Mapping[str, str] | None = None,
        calls: CallCounter | None = None,
    ) -> None:
        """``settings``: URLs, TLS, timeout, retry policy (default: GoTo's cloud)."""
        settings = settings or HttpSettings(api_url=API_URL, token_url=TOKEN_URL)
        self.api = ApiClient(VENDOR, settings, grant, ERRORS, calls=calls)
        self.calls = self.api.calls
        self._lock = threading.Lock()
        self._keys = {email.lower(): key for email, key in (organizer_keys or {}).items()}

    def close(self) -> None:
        self.api.close()

    def organizer_key(self, email: str) -> str:
        """The organizer key of a CRM user (mapped, cached, else looked up by e-mail)."""
        wanted = email.lower()
        with self._lock:
            known = self._keys.get(wanted)
        if known is not None:
            return known
        rows = self.api.call("GET", ORGANIZERS, params={"email": wanted}).json()
        if not rows:
            raise NotFoundError(f"goto: no organizer has the address {wanted}")
        key = str(rows[0]["organizerKey"])
        with self._lock:
            self._keys[wanted] = key
        return key

    # --- actions ------------------------------------------------------------------------

    def create_meeting(self, meeting: Meeting) -> ProviderMeeting:
        response = self.api.call("POST", MEETINGS, json=_meeting_body(meeting), idempotent=False)
        body = response.json()
        created = body[0] if isinstance(body, list) else body
        info = str(created.get("conferenceCallInfo") or "")
        return ProviderMeeting(
            provider=VENDOR,
            id=str(created["meetingid"]),
            join_url=str(created["joinURL"]),
            dial_in=tuple(line.strip() for line in info.splitlines() if line.strip()),
        )

    def find_created(self, meeting: Meeting) -> list[ProviderMeeting]:
        """The organizer's upcoming meetings with the subject, start and end a create of
        ``meeting`` sends (GoTo lists the token's organizer's meetings, unpaged, and
        shows ``<`` and ``>`` as it shows them: decoded)."""
        sent = _meeting_body(meeting)
        rows = self.api.call("GET", UPCOMING).json()
        found: list[ProviderMeeting] = []
        for row in rows if isinstance(rows, list) else []:
            same = (
                html.unescape(str(row.get("subject"))) == html.unescape(sent["subject"])
                and parse_time(row.get("startTime"), "startTime") == meeting.start
                and parse_time(row.get("endTime"), "endTime") == meeting.end
            )
            if same:
                meeting_id = str(row["meetingId"])
                info = str(row.get("conferenceCallInfo") or "")
                found.append(
                    ProviderMeeting(
                        provider=VENDOR,
                        id=meeting_id,
                        join_url=JOIN_URL.format(meetingId=meeting_id),
                        dial_in=tuple(line.strip() for line in info.splitlines() if line.strip()),
                    )
                )
        return found

    def update_meeting(self, provider_meeting_id: str, meeting: Meeting) -> None:
        self.api.call(
            "PUT", MEETING, path={"meetingId": provider_meeting_id}, json=_meeting_body(meeting)
        )

    def cancel_meeting(self, provider_meeting_id: str) -> None:
        """GoTo has no cancellation of its own: the meeting is deleted (invitees are told
        by crm-meetings' CANCEL mail, not by GoTo)."""
        self.delete_meeting(provider_meeting_id)

    def delete_meeting(self, provider_meeting_id: str) -> None:
        try:
            self.api.call("DELETE", MEETING, path={"meetingId": provider_meeting_id})
        except NotFoundError:
            return  # already gone

    # --- history ------------------------------------------------------------------------

    def meetings_ran(
        self, organizer_email: str, since: datetime, until: datetime
    ) -> Iterator[RanMeeting]:
        key = self.organizer_key(organizer_email)
        rows = self.api.call(
            "GET",
            HISTORY,
            path={"organizerKey": key},
            params={"startDate": iso_z(since), "endDate": iso_z(until)},
        ).json()
        seen: set[str] = set()
        for row in sorted(rows, key=lambda r: parse_time(r.get("startTime"))):
            started = parse_time(row.get("startTime"), "startTime")
            meeting_id = str(row.get("meetingId"))
            if not since <= started < until or meeting_id in seen:
                continue
            seen.add(meeting_id)
            yield RanMeeting(
                VENDOR, meeting_id, html.unescape(str(row.get("subject", ""))), started
            )

    def sessions(
        self, provider_meeting_id: str, *, listed: RanMeeting | None = None
    ) -> list[Session]:
        """One attendee read per meeting gives every session with its participants, so
        ``listed`` would save nothing and is not used."""
        try:
            rows = self.api.call("GET", ATTENDEES, path={"meetingId": provider_meeting_id}).json()
        except NotFoundError:
            self.api.call("GET", MEETING, path={"meetingId": provider_meeting_id})  # 404: gone
            raise NoSessionExistsError(provider_meeting_id) from None
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(str(row["meetingInstanceKey"]), []).append(row)
        if not grouped:
            raise NoSessionExistsError(provider_meeting_id)
        sessions = [
            Session(
                provider=VENDOR,
                provider_session_id=session_id,
                provider_meeting_id=provider_meeting_id,
                start=parse_time(group[0].get("startTime"), "startTime"),
                end=parse_time(group[0].get("endTime"), "endTime"),
                participants=tuple(
                    participant(
                        row.get("attendeeName"),
                        row.get("attendeeEmail"),
                        parse_time(row.get("joinTime"), "joinTime"),
                        parse_time(row.get("leaveTime"), "leaveTime"),
                    )
                    for row in group
                ),
            )
            for session_id, group in grouped.items()
        ]
        return sorted(sessions, key=lambda s: (s.start, s.provider_session_id))

    # --- doctor -------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = []
        try:
            self.api.refresh()
            results.append(CheckResult("goto: credentials", True, "access token issued"))
        except CrmMeetingsError as error:
            return [CheckResult("goto: credentials", False, error.message, error.hint)]
        try:
            upcoming = self.api.call("GET", UPCOMING).json()
            results.append(
                CheckResult("goto: API", True, f"reached; {len(upcoming)} upcoming meeting(s)")
            )
        except CrmMeetingsError as error:
            results.append(CheckResult("goto: API", False, error.message, error.hint))
        return results
