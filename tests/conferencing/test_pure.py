"""The pure parts: Zoom UUID encoding, webhook verification, Retry-After, paging, values."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from crm_meetings.conferencing._http import ErrorShape, retry_after_seconds, vendor_error
from crm_meetings.conferencing._values import parse_time, participant, windows
from crm_meetings.conferencing.goto import goto_subject
from crm_meetings.conferencing.paging import token_pages
from crm_meetings.conferencing.webhooks import (
    parse_meeting_ended,
    url_validation_response,
    verify_zoom_signature,
)
from crm_meetings.conferencing.zoom import encode_uuid
from crm_meetings.errors import (
    AuthExpiredError,
    NotFoundError,
    RateLimitedError,
    RemoteError,
    UnauthenticatedError,
    ValidationError,
)
from crm_meetings.sandbox.zoom import sign_webhook

RECORDINGS = Path(__file__).parents[2] / "recordings"
NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
SECRET = "test-secret-token"

# --- Zoom UUIDs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uuid", "segment"),
    [
        ("aDYlohsHRtCd4ii1uC2+hA==", "aDYlohsHRtCd4ii1uC2%2BhA%3D%3D"),
        ("/ajXp112QmuoKj4854875==", "%252FajXp112QmuoKj4854875%253D%253D"),
        ("Hzj+dF1C//ABup5GTeccNA==", "Hzj%252BdF1C%252F%252FABup5GTeccNA%253D%253D"),
        ("85746065432", "85746065432"),
    ],
)
def test_encode_uuid(uuid: str, segment: str) -> None:
    assert encode_uuid(uuid) == segment


@pytest.mark.parametrize("uuid", ["/a//b==", "x//y", "/", "abc", "a+b/c=="])
def test_encode_uuid_round_trips_through_the_decodings_a_server_does(uuid: str) -> None:
    segment = encode_uuid(uuid)
    assert "/" not in segment
    once = unquote(segment)  # the HTTP server's decoding
    needs_double = uuid.startswith("/") or "//" in uuid
    assert (unquote(once) if needs_double else once) == uuid
    assert "/" not in once or not needs_double


# --- webhooks ---------------------------------------------------------------------------


def _signed(body: bytes, stamp: int) -> dict[str, str]:
    return {
        "x-zm-request-timestamp": str(stamp),
        "x-zm-signature": sign_webhook(SECRET, str(stamp), body),
    }


def recorded_event() -> bytes:
    recording = json.loads((RECORDINGS / "zoom" / "meeting_ended_webhook.json").read_text())
    return json.dumps(recording["request"]["body"], separators=(",", ":")).encode()


def test_a_signed_fresh_meeting_ended_is_accepted_and_parsed() -> None:
    body = recorded_event()
    stamp = int(NOW.timestamp())
    verify_zoom_signature(_signed(body, stamp), body, secret=SECRET, now=NOW)
    ended = parse_meeting_ended(body)
    assert ended.meeting_id == "80000000002"
    assert ended.uuid == "/ajXp112QmuoKj4854875=="
    assert ended.start == datetime(2026, 11, 2, 9, 2, tzinfo=UTC)
    assert ended.end == datetime(2026, 11, 2, 9, 41, tzinfo=UTC)


def test_the_signature_is_zooms_formula() -> None:
    body = b'{"event":"meeting.ended"}'
    expected = hmac.new(SECRET.encode(), b"v0:1700000000:" + body, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, "1700000000", body) == f"v0={expected}"


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "signature_missing", "timestamp_missing", "stale", "future", "garbage"],
)
def test_bad_webhooks_are_refused(tamper: str) -> None:
    body = recorded_event()
    stamp = int(NOW.timestamp())
    headers = _signed(body, stamp)
    secret = SECRET
    if tamper == "body":
        body = body.replace(b"80000000002", b"80000000003")
    elif tamper == "secret":
        secret = "another-secret"
    elif tamper == "signature_missing":
        del headers["x-zm-signature"]
    elif tamper == "timestamp_missing":
        del headers["x-zm-request-timestamp"]
    elif tamper == "stale":
        headers = _signed(body, stamp - 301)
    elif tamper == "future":
        headers = _signed(body, stamp + 301)
    else:
        headers["x-zm-request-timestamp"] = "yesterday"
    with pytest.raises(UnauthenticatedError):
        verify_zoom_signature(headers, body, secret=secret, now=NOW)


def test_header_names_are_case_insensitive() -> None:
    body = recorded_event()
    headers = {k.upper(): v for k, v in _signed(body, int(NOW.timestamp())).items()}
    verify_zoom_signature(headers, body, secret=SECRET, now=NOW)


def test_url_validation_challenge() -> None:
    event = {
        "event": "endpoint.url_validation",
        "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
    }
    answer = url_validation_response(event, secret=SECRET)
    assert answer == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": hmac.new(
            SECRET.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256
        ).hexdigest(),
    }
    with pytest.raises(ValidationError):
        url_validation_response({"payload": {}}, secret=SECRET)


@pytest.mark.parametrize(
    "body", [b"not json", b'{"event": "meeting.started"}', b'{"event": "meeting.ended"}', b"[]"]
)
def test_other_events_are_not_meeting_ended(body: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_meeting_ended(body)


# --- Retry-After and error mapping -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("Mon, 02 Nov 2026 10:00:30 GMT", 30.0),
        ("2026-11-02T10:01:00Z", 60.0),
        ("2026-11-02T09:00:00Z", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


ZOOM_SHAPE = ErrorShape(("code",), ("message",), "x-zm-trackingid", "errors")


def _response(status: int, body: object, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "https://api.zoom.us/v2/meetings/1")
    return httpx.Response(status, json=body, headers=headers, request=request)


def test_vendor_errors_map_onto_the_tree() -> None:
    limited = vendor_error(
        "zoom", _response(429, {"code": 429, "message": "slow down"}, **{"Retry-After": "3"}),
        ZOOM_SHAPE, now=NOW,
    )  # fmt: skip
    assert isinstance(limited, RateLimitedError)
    assert limited.retry_after == 3.0
    expired = vendor_error(
        "zoom", _response(401, {"code": 124, "message": "x"}), ZOOM_SHAPE, now=NOW
    )
    assert isinstance(expired, AuthExpiredError)
    assert expired.vendor_code == "124"
    missing = vendor_error(
        "zoom", _response(404, {"code": 3001, "message": "Meeting does not exist: 1."}),
        ZOOM_SHAPE, now=NOW,
    )  # fmt: skip
    assert isinstance(missing, NotFoundError)
    assert "3001" in missing.message
    invalid = vendor_error(
        "zoom",
        _response(400, {"code": 300, "message": "Validation Failed.",
                        "errors": [{"field": "topic", "message": "too long"}]}),
        ZOOM_SHAPE, now=NOW,
    )  # fmt: skip
    assert isinstance(invalid, ValidationError)
    assert invalid.field == "topic"
    failed = vendor_error(
        "zoom", _response(503, {"code": 503, "message": "down"}, **{"x-zm-trackingid": "t-1"}),
        ZOOM_SHAPE, now=NOW,
    )  # fmt: skip
    assert isinstance(failed, RemoteError)
    assert (failed.status, failed.request_id) == (503, "t-1")


# --- paging and values ------------------------------------------------------------------


def test_token_pages_follow_tokens_and_refuse_a_loop() -> None:
    pages = {None: ([1, 2], "a"), "a": ([3], "b"), "b": ([4], "")}
    assert list(token_pages(lambda t: pages[t], vendor="zoom")) == [1, 2, 3, 4]
    looping = {None: ([1], "a"), "a": ([2], "a")}
    with pytest.raises(RemoteError, match="twice"):
        list(token_pages(lambda t: looping[t], vendor="zoom"))


@pytest.mark.parametrize(
    "text",
    ["2026-11-02T09:02:00Z", "2026-11-02T09:02:00.000+00:00", "2026-11-02T10:02:00.000+0100",
     "2026-11-02T09:02:00"],
)  # fmt: skip
def test_parse_time_reads_both_vendors_formats(text: str) -> None:
    assert parse_time(text) == datetime(2026, 11, 2, 9, 2, tzinfo=UTC)


def test_participant_drops_an_address_the_model_refuses() -> None:
    p = participant("Dial-in +1 555", "+15550100", NOW, NOW + timedelta(minutes=5))
    assert (p.name, p.email) == ("Dial-in +1 555", None)
    q = participant("", "Eve@Example.com", NOW, NOW - timedelta(minutes=1), 42)
    assert (q.name, q.email, q.leave_time, q.seconds_attended) == (
        "eve@example.com", "eve@example.com", NOW, 42,
    )  # fmt: skip


def test_windows_cut_a_range() -> None:
    cut = windows(NOW, NOW + timedelta(days=65), timedelta(days=30))
    assert [(b - a).days for a, b in cut] == [30, 30, 5]
    assert cut[0][0] == NOW
    assert cut[-1][1] == NOW + timedelta(days=65)
    assert windows(NOW, NOW, timedelta(days=30)) == []
    with pytest.raises(ValueError, match="longer than zero"):
        windows(NOW, NOW + timedelta(days=1), timedelta(0))


def test_goto_subject_escapes_and_fits() -> None:
    assert goto_subject("a <b> c") == "a &lt;b&gt; c"
    assert len(goto_subject("x" * 150)) == 100
    assert goto_subject("y" * 97 + "<z") == "y" * 97  # an entity is never cut in half
