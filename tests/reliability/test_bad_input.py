"""Bad input, end to end, where the unit suites stop short.

``tests/calendar/test_escaping.py`` fuzzes printable text and ``tests/web/test_auth.py``
checks one hand-made tampered, stale and replayed request per CRM. Here hypothesis sends
the rest: control characters, CR/LF and line-separator injections in every free-text
field, through the model, the calendar and iMIP (the model refuses it, or the mail has the
clean mail's headers and the .ics the clean .ics's properties: nothing added); and every
single-bit tampering of each signed request, every truncation and any text at all (refused
with ``UnauthenticatedError``, nothing else); a valid request twice (refused the second time).
"""

from __future__ import annotations

import base64
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_meetings.calendar import ics, imip
from crm_meetings.errors import UnauthenticatedError, ValidationError
from crm_meetings.model import Invitee, Meeting, Person, new_meeting
from crm_meetings.sandbox.testing import load_module
from crm_meetings.web.auth import (
    ReplayGuard,
    hubspot_v3_signature,
    sign_widget_token,
    verify_canvas,
    verify_hubspot_v3,
    verify_widget_token,
)

TESTS = Path(__file__).parent.parent


escaping = load_module(TESTS / "calendar" / "test_escaping.py")
auth = load_module(TESTS / "web" / "test_auth.py")
NOW = escaping.NOW
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --- model -> calendar -> iMIP ----------------------------------------------------------

BREAKS = ["\r\n", "\n", "\r", "\x00", "\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\t"]
PAYLOADS = [
    "X-Injected: 1",
    "Bcc: eve@evil.example",
    "END:VEVENT",
    "BEGIN:VALARM",
    "ATTENDEE:mailto:eve@evil.example",
    "Content-Type: text/html",
    "=?utf-8?q?=0D=0ABcc:_eve@evil.example?=",
    ";X-PARAM=1:",
    '"',
    "\\",
]
HOSTILE = st.lists(
    st.one_of(st.sampled_from(BREAKS), st.sampled_from(PAYLOADS), st.text(max_size=12)),
    min_size=1,
    max_size=8,
).map("".join)


def build(**overrides: Any) -> Meeting:
    fields: dict[str, Any] = {
        "crm": "salesforce",
        "subject": "Quarterly review",
        "start": datetime(2026, 3, 10, 8, 0, tzinfo=UTC),
        "end": datetime(2026, 3, 10, 9, 0, tzinfo=UTC),
        "timezone": "Europe/Paris",
        "organizer": Person("olga@acme.example", "Olga Organizer"),
        "now": NOW,
        "id_factory": lambda: "m1",
        "invitees": (Invitee("ann@client.example", "Ann Client"),),
        "description": "Agenda",
        "location": "Room 4",
        "join_url": "https://meet.example/j/123?pwd=abc",
    }
    fields.update(overrides)
    return new_meeting(**fields)


def shape(meeting: Meeting) -> tuple[list[str], list[str]]:
    """The mail's header names and the .ics's (unfolded) property names, in order."""
    (mail,) = imip.compose(meeting, ics.plan_new(meeting), sender=escaping.SENDER, now=NOW)
    message = message_from_bytes(mail.raw, policy=compat32)
    headers = [name.lower() for name in message]
    calendar = next(
        part.get_payload(decode=True)
        for part in message.walk()
        if part.get_content_type() == "text/calendar"
    )
    assert isinstance(calendar, bytes)
    unfolded = calendar.replace(b"\r\n ", b"").replace(b"\r\n\t", b"")
    properties = [
        line.split(b":")[0].split(b";")[0].decode("ascii")
        for line in unfolded.split(b"\r\n")
        if line
    ]
    return headers, properties


@FUZZ
@given(
    field=st.sampled_from(["subject", "description", "location", "name", "organizer", "notes"]),
    text=HOSTILE,
)
def test_no_text_anywhere_adds_a_header_or_a_property(
    field: str, text: str, tally: Counter[str]
) -> None:
    clean = shape(build())
    try:
        if field == "name":
            meeting = build(invitees=(Invitee("ann@client.example", text),))
        elif field == "organizer":
            meeting = build(organizer=Person("olga@acme.example", text))
        else:
            meeting = build(**{field: text})
        hostile = shape(meeting)
    except ValidationError:
        tally["bad_inputs_refused"] += 1
        return
    tally["bad_inputs_escaped"] += 1
    headers, properties = hostile
    assert headers == clean[0], "no header added, none removed"
    optional = {"DESCRIPTION", "LOCATION", "X-ALT-DESC"}  # absent when the text is blank
    assert [p for p in properties if p not in optional] == [
        p for p in clean[1] if p not in optional
    ], "no property added"


# --- signed requests --------------------------------------------------------------------

HUBSPOT_SECRET = "hubspot-app-secret"
WIDGET_SECRET = b"zoho-org-secret"
URI = "https://app.example/api/panel?recordId=1"
BODY = b'{"objectId": 1}'


def hubspot_headers(now: datetime = auth.NOW) -> dict[str, str]:
    stamp = str(int(now.timestamp() * 1000))
    return {
        "X-HubSpot-Signature-v3": hubspot_v3_signature(HUBSPOT_SECRET, "POST", URI, BODY, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
    }


def widget_token(now: datetime = auth.NOW) -> str:
    return str(
        sign_widget_token(
            WIDGET_SECRET, org="org1", user="u1", email=None, module="Deals", record="9", now=now
        )
    )


def check_canvas(text: str, guard: ReplayGuard | None = None) -> None:
    verify_canvas(text, auth.CANVAS_SECRET, now=auth.NOW, replay=guard)


def check_widget(text: str, guard: ReplayGuard | None = None) -> None:
    verify_widget_token(
        text, lambda org: WIDGET_SECRET if org == "org1" else None, now=auth.NOW, replay=guard
    )


def check_hubspot(
    headers: dict[str, str], body: bytes = BODY, guard: ReplayGuard | None = None
) -> None:
    verify_hubspot_v3(
        HUBSPOT_SECRET, method="POST", uri=URI, body=body, headers=headers, now=auth.NOW,
        replay=guard,
    )  # fmt: skip


def flip(text: str, bit: int) -> str:
    """``text`` with one bit of its decoded bytes flipped, re-encoded the same way."""
    head, dot, tail = text.partition(".")
    for part_index, part in enumerate((head, tail)):
        urlsafe = "-" in part or "_" in part or (not part.endswith("=") and "+" not in part)
        padded = part + "=" * (-len(part) % 4)
        raw = bytearray(base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded))
        if bit < 8 * len(raw):
            raw[bit // 8] ^= 1 << (bit % 8)
            encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(bytes(raw))
            text_part = encoded.decode().rstrip("=") if not part.endswith("=") else encoded.decode()
            return text_part + dot + tail if part_index == 0 else head + dot + text_part
        bit -= 8 * len(raw)
    raise AssertionError("bit out of range")


@FUZZ
@given(data=st.data())
def test_every_tampered_signed_request_is_refused(data: st.DataObject, tally: Counter[str]) -> None:
    canvas = auth.canvas_request()
    check_canvas(canvas)  # the untouched one passes
    bits = 8 * (len(canvas) * 3 // 4)
    with pytest.raises(UnauthenticatedError):
        check_canvas(flip(canvas, data.draw(st.integers(0, bits - 80), label="canvas bit")))

    token = widget_token()
    check_widget(token)
    with pytest.raises(UnauthenticatedError):
        check_widget(flip(token, data.draw(st.integers(0, 8 * (len(token) * 3 // 4) - 24))))

    headers = hubspot_headers()
    check_hubspot(headers)
    signature = headers["X-HubSpot-Signature-v3"]
    tampered = dict(
        headers, **{"X-HubSpot-Signature-v3": flip(signature, data.draw(st.integers(0, 255)))}
    )
    with pytest.raises(UnauthenticatedError):
        check_hubspot(tampered)
    body = bytearray(BODY)
    at = data.draw(st.integers(0, 8 * len(body) - 1))
    body[at // 8] ^= 1 << (at % 8)
    with pytest.raises(UnauthenticatedError):
        check_hubspot(headers, bytes(body))
    tally["bad_inputs_refused"] += 4


@FUZZ
@given(
    text=st.text(max_size=200) | st.binary(max_size=150).map(lambda b: base64.b64encode(b).decode())
)
def test_any_text_as_a_signed_request_is_refused_cleanly(text: str, tally: Counter[str]) -> None:
    for check in (check_canvas, check_widget):
        with pytest.raises(UnauthenticatedError):
            check(text)
    with pytest.raises(UnauthenticatedError):
        check_hubspot({"X-HubSpot-Signature-v3": text, "X-HubSpot-Request-Timestamp": text})
    with pytest.raises(UnauthenticatedError):
        check_hubspot(dict(hubspot_headers(), **{"X-HubSpot-Request-Timestamp": text or "x"}))
    tally["bad_inputs_refused"] += 4


@pytest.mark.parametrize("age", [timedelta(minutes=6), timedelta(hours=1), timedelta(days=400)])
def test_stale_and_replayed_signed_requests_are_refused(
    age: timedelta, tally: Counter[str]
) -> None:
    then = auth.NOW - age
    with pytest.raises(UnauthenticatedError):
        check_hubspot(hubspot_headers(then))
    with pytest.raises(UnauthenticatedError):
        check_widget(widget_token(then))
    stale_canvas = auth.canvas_request(
        issuedAt=int((then - timedelta(minutes=15)).timestamp() * 1000)
    )
    with pytest.raises(UnauthenticatedError):
        check_canvas(stale_canvas)
    guard = ReplayGuard()
    canvas, token, headers = auth.canvas_request(), widget_token(), hubspot_headers()
    check_canvas(canvas, guard)
    check_widget(token, guard)
    check_hubspot(headers, guard=guard)
    for replay in (
        lambda: check_canvas(canvas, guard),
        lambda: check_widget(token, guard),
        lambda: check_hubspot(headers, guard=guard),
    ):
        with pytest.raises(UnauthenticatedError, match="already used"):
            replay()
    tally["bad_inputs_refused"] += 6
