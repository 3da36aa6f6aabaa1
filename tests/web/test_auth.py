"""Signed requests from the three CRMs: valid, wrong, stale, replayed, tampered."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from crm_meetings.errors import UnauthenticatedError
from crm_meetings.model import CrmKind, RecordRef
from crm_meetings.web.auth import (
    ReplayGuard,
    generate_api_key,
    hash_api_key,
    hubspot_v3_signature,
    sign_widget_token,
    verify_api_key,
    verify_canvas,
    verify_hubspot_v3,
    verify_widget_token,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CANVAS_SECRET = b"canvas-consumer-secret"


def canvas_request(secret: bytes = CANVAS_SECRET, **overrides: object) -> str:
    payload: dict[str, object] = {
        "algorithm": "HMACSHA256",
        "issuedAt": int(NOW.timestamp() * 1000) - 1000,
        "userId": "005xx000001Sv6AAAS",
        "client": {"instanceUrl": "https://example.my.salesforce.com", "oauthToken": "00D!x"},
        "context": {
            "user": {"userId": "005xx000001Sv6AAAS", "email": "rep@sales.example.com"},
            "organization": {"organizationId": "00Dxx0000001gEREAY"},
            "environment": {
                "record": {"Id": "001xx000003DGb2AAG", "attributes": {"type": "Account"}}
            },
        },
    }
    payload.update(overrides)
    envelope = base64.b64encode(json.dumps(payload).encode()).decode()
    signature = base64.b64encode(
        hmac.new(secret, envelope.encode(), hashlib.sha256).digest()
    ).decode()
    return f"{signature}.{envelope}"


def test_canvas_valid_request_gives_user_org_and_record() -> None:
    caller, request = verify_canvas(canvas_request(), CANVAS_SECRET, now=NOW)
    assert caller.crm is CrmKind.SALESFORCE
    assert caller.org_id == "00Dxx0000001gEREAY"
    assert caller.user_email == "rep@sales.example.com"
    assert caller.record == RecordRef("Account", "001xx000003DGb2AAG")
    assert request["client"]["instanceUrl"] == "https://example.my.salesforce.com"


def test_canvas_wrong_secret_is_refused() -> None:
    with pytest.raises(UnauthenticatedError, match="consumer secret"):
        verify_canvas(canvas_request(b"other"), CANVAS_SECRET, now=NOW)


def test_canvas_tampered_envelope_is_refused() -> None:
    signature, envelope = canvas_request().split(".")
    forged = json.loads(base64.b64decode(envelope))
    forged["context"]["organization"]["organizationId"] = "00DOTHERORG"
    forged_envelope = base64.b64encode(json.dumps(forged).encode()).decode()
    with pytest.raises(UnauthenticatedError):
        verify_canvas(f"{signature}.{forged_envelope}", CANVAS_SECRET, now=NOW)


@pytest.mark.parametrize("value", ["", "nodot", ".x", "x.", "!!!.???"])
def test_canvas_malformed_is_refused(value: str) -> None:
    with pytest.raises(UnauthenticatedError):
        verify_canvas(value, CANVAS_SECRET, now=NOW)


def test_canvas_stale_and_replayed_are_refused() -> None:
    old = canvas_request(issuedAt=int((NOW - timedelta(hours=1)).timestamp() * 1000))
    with pytest.raises(UnauthenticatedError, match="too old"):
        verify_canvas(old, CANVAS_SECRET, now=NOW)
    guard = ReplayGuard()
    fresh = canvas_request()
    verify_canvas(fresh, CANVAS_SECRET, now=NOW, replay=guard)
    with pytest.raises(UnauthenticatedError, match="already used"):
        verify_canvas(fresh, CANVAS_SECRET, now=NOW + timedelta(seconds=1), replay=guard)
    # Canvas allows 15 minutes, so the guard keeps the signature that long, not 5 minutes
    with pytest.raises(UnauthenticatedError, match="already used"):
        verify_canvas(fresh, CANVAS_SECRET, now=NOW + timedelta(minutes=14), replay=guard)


HS_SECRET = "hubspot-client-secret"
URI = "https://panel.example.com/api/v1/hubspot/card?portalId=62515&userEmail=rep%40x.com"


def hubspot_headers(at: datetime, body: bytes, secret: str = HS_SECRET) -> dict[str, str]:
    timestamp = str(int(at.timestamp() * 1000))
    return {
        "X-HubSpot-Signature-v3": hubspot_v3_signature(secret, "POST", URI, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def test_hubspot_signature_is_computed_over_the_decoded_uri() -> None:
    timestamp = "1700000000000"
    expected = base64.b64encode(
        hmac.new(
            HS_SECRET.encode(),
            b"GET" + URI.replace("%40", "@").encode() + b"" + timestamp.encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert hubspot_v3_signature(HS_SECRET, "get", URI, b"", timestamp) == expected


def test_hubspot_valid_request_passes() -> None:
    body = b'{"objectId": 42}'
    verify_hubspot_v3(
        HS_SECRET, method="POST", uri=URI, body=body, headers=hubspot_headers(NOW, body), now=NOW
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong secret", "does not match"),
        ("body changed", "does not match"),
        ("stale", "five minutes"),
        ("missing", "no HubSpot"),
        ("bad timestamp", "millisecond"),
    ],
)
def test_hubspot_bad_requests_are_refused(case: str, message: str) -> None:
    body = b'{"objectId": 42}'
    headers = {
        "wrong secret": hubspot_headers(NOW, body, "other"),
        "body changed": hubspot_headers(NOW, b'{"objectId": 43}'),
        "stale": hubspot_headers(NOW - timedelta(minutes=6), body),
        "missing": {},
        "bad timestamp": {"X-HubSpot-Signature-v3": "x", "X-HubSpot-Request-Timestamp": "soon"},
    }[case]
    with pytest.raises(UnauthenticatedError, match=message):
        verify_hubspot_v3(HS_SECRET, method="POST", uri=URI, body=body, headers=headers, now=NOW)


def test_hubspot_replay_is_refused() -> None:
    body = b"{}"
    headers = hubspot_headers(NOW, body)
    guard = ReplayGuard()
    verify_hubspot_v3(
        HS_SECRET, method="POST", uri=URI, body=body, headers=headers, now=NOW, replay=guard
    )
    with pytest.raises(UnauthenticatedError, match="already used"):
        verify_hubspot_v3(
            HS_SECRET, method="POST", uri=URI, body=body, headers=headers, now=NOW, replay=guard
        )


ZOHO_SECRETS = {"org-1": b"zoho-org-1-secret"}


def widget(secret: bytes = b"zoho-org-1-secret", at: datetime = NOW, org: str = "org-1") -> str:
    return sign_widget_token(
        secret, org=org, user="u1", email="rep@x.com", module="Deals", record="42", now=at
    )


def test_zoho_widget_token_round_trips() -> None:
    caller = verify_widget_token(widget(), ZOHO_SECRETS.get, now=NOW + timedelta(minutes=1))
    assert (caller.crm, caller.org_id, caller.user_id) == (CrmKind.ZOHO, "org-1", "u1")
    assert caller.record == RecordRef("Deals", "42")
    assert caller.profile is None
    with_profile = sign_widget_token(
        ZOHO_SECRETS["org-1"], org="org-1", user="u1", email=None, module=None, record=None,
        now=NOW, profile="Sales Rep",
    )  # fmt: skip
    assert verify_widget_token(with_profile, ZOHO_SECRETS.get, now=NOW).profile == "Sales Rep"


def test_a_zoho_token_valid_for_more_than_five_minutes_is_refused() -> None:
    long_lived = sign_widget_token(
        ZOHO_SECRETS["org-1"], org="org-1", user="u1", email=None, module=None, record=None,
        now=NOW, ttl=timedelta(hours=1),
    )  # fmt: skip
    with pytest.raises(UnauthenticatedError, match="more than five minutes"):
        verify_widget_token(long_lived, ZOHO_SECRETS.get, now=NOW)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: widget(b"wrong"), "does not match"),
        (lambda: widget(at=NOW - timedelta(minutes=10)), "expired"),
        (lambda: widget(org="org-unknown"), "do not serve"),
        (lambda: widget(at=NOW + timedelta(minutes=10)), "future"),
        (lambda: "garbage", "malformed"),
    ],
)
def test_zoho_bad_tokens_are_refused(token: object, message: str) -> None:
    with pytest.raises(UnauthenticatedError, match=message):
        verify_widget_token(token(), ZOHO_SECRETS.get, now=NOW)  # type: ignore[operator]


def test_api_keys_are_stored_hashed_and_compared() -> None:
    key = generate_api_key()
    stored = hash_api_key(key)
    assert key not in stored
    assert verify_api_key(key, stored)
    assert not verify_api_key(key + "x", stored)
