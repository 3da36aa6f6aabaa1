"""Zoom webhooks: verify ``x-zm-signature`` and read ``meeting.ended`` as "this meeting ran".

Zoom signs each event with the app's secret token: ``x-zm-signature`` is ``v0=`` followed by
the hex HMAC-SHA256 of ``v0:{x-zm-request-timestamp}:{raw body}``
(https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events). We compare in
constant time and refuse timestamps outside a freshness window, so a captured request
cannot be replayed later. The ``endpoint.url_validation`` challenge is answered with
:func:`url_validation_response`. Everything here is pure: the web layer passes headers, raw
body and the current time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from crm_meetings.conferencing._values import parse_time
from crm_meetings.errors import UnauthenticatedError, ValidationError

__all__ = [
    "MAX_SKEW_SECONDS",
    "MeetingEnded",
    "parse_meeting_ended",
    "url_validation_response",
    "verify_zoom_signature",
]

MAX_SKEW_SECONDS: Final = 300
SIGNATURE: Final = "x-zm-signature"
TIMESTAMP: Final = "x-zm-request-timestamp"


@dataclass(frozen=True, slots=True)
class MeetingEnded:
    """Zoom says: this meeting (``meeting_id``) ran; ``uuid`` is the instance that ended."""

    meeting_id: str
    uuid: str
    host_id: str
    topic: str
    start: datetime | None
    end: datetime | None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _digest(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_zoom_signature(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: datetime,
    max_skew: float = MAX_SKEW_SECONDS,
) -> None:
    """Raise UnauthenticatedError unless ``body`` carries a valid, fresh Zoom signature."""
    signature = _header(headers, SIGNATURE)
    stamp = _header(headers, TIMESTAMP)
    if not signature or not stamp:
        raise UnauthenticatedError(f"zoom webhook without {SIGNATURE} or {TIMESTAMP}")
    try:
        sent_at = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError):
        raise UnauthenticatedError(f"zoom webhook timestamp {stamp!r} is not a number") from None
    if abs((now - sent_at).total_seconds()) > max_skew:
        raise UnauthenticatedError(
            f"zoom webhook timestamp {sent_at.isoformat()} is outside the {max_skew:g} s window",
            hint="Check the server clock; a replayed request is refused on purpose.",
        )
    expected = "v0=" + _digest(secret, b"v0:" + stamp.encode() + b":" + body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise UnauthenticatedError(
            "zoom webhook signature does not match",
            hint="Check that the webhook secret token in the configuration is the app's.",
        )


def url_validation_response(payload: Mapping[str, Any], *, secret: str) -> dict[str, str]:
    """The answer to ``endpoint.url_validation``: the plain token and its HMAC (hex)."""
    plain = payload.get("payload", {}).get("plainToken")
    if not isinstance(plain, str) or not plain:
        raise ValidationError("payload.plainToken", "is missing")
    return {"plainToken": plain, "encryptedToken": _digest(secret, plain.encode())}


def parse_meeting_ended(body: bytes) -> MeetingEnded:
    """Read a (verified) ``meeting.ended`` body; any other event is a ValidationError."""
    try:
        event = json.loads(body)
    except ValueError as error:
        raise ValidationError("body", "is not JSON") from error
    if not isinstance(event, Mapping) or event.get("event") != "meeting.ended":
        kind = event.get("event") if isinstance(event, Mapping) else None
        raise ValidationError("event", f"{kind!r} is not meeting.ended")
    meeting = event.get("payload", {}).get("object", {})
    if not isinstance(meeting, Mapping) or not meeting.get("id") or not meeting.get("uuid"):
        raise ValidationError("payload.object", "has no meeting id and uuid")
    return MeetingEnded(
        meeting_id=str(meeting["id"]),
        uuid=str(meeting["uuid"]),
        host_id=str(meeting.get("host_id", "")),
        topic=str(meeting.get("topic", "")),
        start=parse_time(meeting["start_time"]) if meeting.get("start_time") else None,
        end=parse_time(meeting["end_time"]) if meeting.get("end_time") else None,
    )
