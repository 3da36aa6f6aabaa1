"""How CRM pages prove who they are: signature verification, pure and constant-time.

- **Salesforce Canvas** signed request: ``<base64 HMAC-SHA256(consumer secret, envelope)>.
  <envelope>`` where the envelope is the base64-encoded JSON CanvasRequest (Salesforce
  "Verifying and Decoding a Signed Request"). We take user, org and record from it.
- **HubSpot** request signature v3: ``X-HubSpot-Signature-v3`` is the base64 HMAC-SHA256,
  keyed by the app's client secret, of ``method + uri + body + timestamp``, with
  ``X-HubSpot-Request-Timestamp`` (milliseconds) no older than five minutes.
- **Zoho CRM** widgets: Zoho has no signed-request scheme, so the widget asks a Deluge
  function, which holds the per-org secret, for a short-lived token in our own format:
  ``<base64url JSON claims>.<base64url HMAC-SHA256(secret, claims part)>`` with ``org``,
  ``user``, ``email``, ``module``, ``record``, ``iat``, ``exp`` (at most five minutes
  after ``iat``), a ``nonce`` and optionally the user's ``profile``.
- **Server-to-server** API keys: random keys, stored as SHA-256 hashes, compared in
  constant time.

Every verifier refuses stale requests, and a :class:`ReplayCheck` refuses a signature
seen before within its freshness window: :class:`ReplayGuard` in this process's memory,
:class:`crm_meetings.web.replay.StoredReplayGuard` across every process on one store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from crm_meetings.errors import UnauthenticatedError
from crm_meetings.model import CrmKind, RecordRef, utc

__all__ = [
    "FRESHNESS",
    "REPLAYED",
    "CallerContext",
    "ReplayCheck",
    "ReplayGuard",
    "generate_api_key",
    "hash_api_key",
    "hubspot_v3_signature",
    "sign_widget_token",
    "signature_digest",
    "verify_api_key",
    "verify_canvas",
    "verify_hubspot_v3",
    "verify_widget_token",
]

FRESHNESS: Final = timedelta(minutes=5)
# HubSpot decodes these percent-escapes in the URI before signing (request validation doc).
_HUBSPOT_DECODE: Final = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CallerContext:
    """Who is calling, from which org, about which record — after verification.

    ``profile`` is the user's CRM profile as the signed request names it (Salesforce
    ``user.profileId``, the Zoho token's ``profile`` claim, HubSpot's from
    ``[web] hubspot_profiles``): the organisation addresses list the profiles that may
    send from them.
    """

    crm: CrmKind
    org_id: str
    user_id: str
    user_email: str | None
    record: RecordRef | None = None
    profile: str | None = None


def _refuse(message: str) -> UnauthenticatedError:
    return UnauthenticatedError(message)


def _b64decode(text: str, *, urlsafe: bool) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refuse("The request signature is not valid base64.") from exc


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse("The signed payload is not JSON.") from exc
    if not isinstance(value, dict):
        raise _refuse("The signed payload is not a JSON object.")
    return value


class ReplayCheck(Protocol):
    """Raises :class:`UnauthenticatedError` for a signature already used; otherwise
    remembers it until ``until`` (when its verifier would refuse it as stale), or for the
    guard's window when the signature never goes stale."""

    def check(self, signature: str, now: datetime, until: datetime | None = None) -> None: ...


def signature_digest(signature: str) -> str:
    """What a replay guard keeps of a signature: its SHA-256, hex (64 characters)."""
    return hashlib.sha256(signature.encode()).hexdigest()


REPLAYED: Final = "This signed request was already used (possible replay)."


class ReplayGuard:
    """Remembers signatures in this process for their freshness window (one process only:
    workers sharing a store use :class:`~crm_meetings.web.replay.StoredReplayGuard`)."""

    def __init__(self, window: timedelta = FRESHNESS) -> None:
        self._window = window
        self._expiry: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def check(self, signature: str, now: datetime, until: datetime | None = None) -> None:
        key = signature_digest(signature)
        with self._lock:
            self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            if key in self._expiry:
                raise _refuse(REPLAYED)
            self._expiry[key] = max(until or now, now + self._window)


# --- Salesforce Canvas ----------------------------------------------------------------


def verify_canvas(
    signed_request: str,
    consumer_secret: bytes,
    *,
    now: datetime,
    max_age: timedelta = timedelta(minutes=15),
    replay: ReplayCheck | None = None,
) -> tuple[CallerContext, Mapping[str, Any]]:
    """The caller and the full CanvasRequest, or UnauthenticatedError."""
    signature, dot, envelope = signed_request.strip().partition(".")
    if not dot or not signature or not envelope:
        raise _refuse("The Canvas signed request is malformed (expected signature.envelope).")
    expected = hmac.new(consumer_secret, envelope.encode("ascii", "replace"), hashlib.sha256)
    if not hmac.compare_digest(expected.digest(), _b64decode(signature, urlsafe=False)):
        raise _refuse("The Canvas signed request does not match the consumer secret.")
    request = _json(_b64decode(envelope, urlsafe=False))
    if request.get("algorithm", "HMACSHA256").upper() != "HMACSHA256":
        raise _refuse(f"Unsupported Canvas signing algorithm {request.get('algorithm')!r}.")
    issued = request.get("issuedAt")
    stale_at = None
    if isinstance(issued, (int, float)):
        issued_at = datetime.fromtimestamp(issued / 1000 if issued > 1e11 else issued, UTC)
        stale_at = issued_at + max_age
        if utc(now) > stale_at:
            raise _refuse("The Canvas signed request is too old.")
    if replay is not None:
        replay.check(signature, utc(now), stale_at)
    context = request.get("context") or {}
    user = context.get("user") or {}
    org = context.get("organization") or {}
    record_data = (context.get("environment") or {}).get("record") or {}
    record = None
    if record_data.get("Id"):
        object_type = (record_data.get("attributes") or {}).get("type") or "Record"
        record = RecordRef(str(object_type), str(record_data["Id"]))
    user_id = str(user.get("userId") or request.get("userId") or "")
    org_id = str(org.get("organizationId") or "")
    if not user_id or not org_id:
        raise _refuse("The Canvas signed request names no user or organization.")
    profile = user.get("profileId")
    caller = CallerContext(
        CrmKind.SALESFORCE, org_id, user_id, user.get("email"), record, profile and str(profile)
    )
    return caller, request


# --- HubSpot v3 -----------------------------------------------------------------------


def _hubspot_uri(uri: str) -> str:
    for escape, char in _HUBSPOT_DECODE.items():
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return uri


def hubspot_v3_signature(
    client_secret: str, method: str, uri: str, body: bytes, timestamp: str
) -> str:
    """The X-HubSpot-Signature-v3 value HubSpot computes for this request."""
    message = method.upper().encode() + _hubspot_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_hubspot_v3(
    client_secret: str,
    *,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    replay: ReplayCheck | None = None,
) -> None:
    """Raise UnauthenticatedError unless the request carries a fresh, valid v3 signature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("x-hubspot-signature-v3")
    timestamp = lowered.get("x-hubspot-request-timestamp")
    if not signature or not timestamp:
        raise _refuse("The request has no HubSpot v3 signature headers.")
    try:
        sent = datetime.fromtimestamp(int(timestamp) / 1000, UTC)
    except (ValueError, OverflowError) as exc:
        raise _refuse("X-HubSpot-Request-Timestamp is not a millisecond timestamp.") from exc
    if abs(utc(now) - sent) > FRESHNESS:
        raise _refuse("The HubSpot request timestamp is more than five minutes off.")
    expected = hubspot_v3_signature(client_secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise _refuse("The HubSpot request signature does not match the app secret.")
    if replay is not None:
        replay.check(signature, utc(now), sent + FRESHNESS)


# --- Zoho widget tokens ---------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_widget_token(
    secret: bytes,
    *,
    org: str,
    user: str,
    email: str | None,
    module: str | None,
    record: str | None,
    now: datetime,
    profile: str | None = None,
    ttl: timedelta = FRESHNESS,
    nonce_factory: Callable[[], str] = lambda: secrets.token_urlsafe(12),
) -> str:
    """What the org's Deluge function returns to the widget (also used by tests and the
    demo's sign-in link); ``profile`` is the user's Zoho profile name."""
    issued = int(utc(now).timestamp())
    claims: dict[str, object] = {
        "org": org,
        "user": user,
        "email": email,
        "module": module,
        "record": record,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
        "nonce": nonce_factory(),
    }
    if profile is not None:
        claims["profile"] = profile
    body = _b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64url(hmac.new(secret, body.encode(), hashlib.sha256).digest())}"


def verify_widget_token(
    token: str,
    secret_for_org: Callable[[str], bytes | None],
    *,
    now: datetime,
    replay: ReplayCheck | None = None,
) -> CallerContext:
    """The caller of a Zoho widget request; the org's secret is looked up by its claim."""
    body, dot, mac = token.strip().partition(".")
    if not dot:
        raise _refuse("The Zoho widget token is malformed.")
    claims = _json(_b64decode(body, urlsafe=True))
    secret = secret_for_org(str(claims.get("org", "")))
    if secret is None:
        raise _refuse("The Zoho widget token names an organization we do not serve.")
    expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64decode(mac, urlsafe=True)):
        raise _refuse("The Zoho widget token does not match the organization's secret.")
    instant = int(utc(now).timestamp())
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= instant:
        raise _refuse("The Zoho widget token has expired.")
    if not isinstance(claims.get("iat"), int) or claims["iat"] > instant + 60:
        raise _refuse("The Zoho widget token is issued in the future.")
    if claims["exp"] - claims["iat"] > FRESHNESS.total_seconds():
        raise _refuse(
            "The Zoho widget token is valid for more than five minutes; the org's Deluge "
            "function must set exp at most 300 seconds after iat."
        )
    if replay is not None:
        replay.check(mac, utc(now), datetime.fromtimestamp(claims["exp"], UTC))
    record = None
    if claims.get("module") and claims.get("record"):
        record = RecordRef(str(claims["module"]), str(claims["record"]))
    profile = claims.get("profile")
    return CallerContext(
        CrmKind.ZOHO,
        str(claims["org"]),
        str(claims.get("user", "")),
        claims.get("email"),
        record,
        str(profile) if profile else None,
    )


# --- server-to-server API keys --------------------------------------------------------


def generate_api_key() -> str:
    """A new key to show the admin once; only its hash is stored."""
    return "cmk_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def verify_api_key(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key(key), stored_hash)
