"""Who is calling the web layer: one :class:`Principal` per request, from one of four proofs.

1. ``Authorization: Bearer cmk_…`` — a server-to-server API key of one org (hashed at
   rest, revocable). Key holders are that org's admins.
2. ``X-HubSpot-Signature-v3`` — a HubSpot card call; org, user and record come from the
   signed URI's ``portalId``, ``userId``, ``userEmail``, ``associatedObjectType`` and
   ``associatedObjectId``.
3. ``X-Zoho-Widget-Token`` — a token from the org's Deluge function (see ``web.auth``).
4. The ``cm_session`` cookie, issued after a verified Canvas POST, HubSpot or Zoho entry:
   signed, HttpOnly, Secure, SameSite=None (the page lives in the CRM's iframe), expiring.
   Every state-changing request on a session must echo its CSRF token in ``X-CSRF-Token``.

Signed proofs are checked for freshness and against a replay guard shared through the store
(:class:`~crm_meetings.web.replay.StoredReplayGuard`); every caller must come from the org
its CRM's connection serves (:class:`~crm_meetings.web.orgs.OrgBinding`, else 403).
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from crm_meetings.config import WebSettings
from crm_meetings.errors import PermissionDeniedError, UnauthenticatedError
from crm_meetings.model import CrmKind, Person, RecordRef, utc
from crm_meetings.store import Clock, Store
from crm_meetings.web.auth import (
    CallerContext,
    ReplayCheck,
    hash_api_key,
    verify_api_key,
    verify_canvas,
    verify_hubspot_v3,
    verify_widget_token,
)
from crm_meetings.web.orgs import OrgBinding
from crm_meetings.web.tables import ApiKeyRow

__all__ = [
    "CSRF_HEADER",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "ZOHO_HEADER",
    "AuthMethod",
    "Authenticator",
    "IncomingRequest",
    "Principal",
    "SessionCodec",
]

SESSION_COOKIE: Final = "cm_session"
CSRF_HEADER: Final = "X-CSRF-Token"
ZOHO_HEADER: Final = "X-Zoho-Widget-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_SALT: Final = "crm-meetings.web.session"
#: an API key's ``last_used_at`` is kept to the minute, not written on every request
LAST_USED_EVERY: Final = timedelta(minutes=1)


class AuthMethod(StrEnum):
    SESSION = "session"
    HUBSPOT = "hubspot"
    ZOHO = "zoho"
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: their context, how they proved it, and whether they administer."""

    caller: CallerContext
    method: AuthMethod
    admin: bool = False
    csrf: str | None = None

    @property
    def org_id(self) -> str:
        """The org every read and write is scoped to — never taken from a request body."""
        return self.caller.org_id

    def actor(self) -> Person:
        """The acting person, for actions and audit; a caller without e-mail may not act."""
        if not self.caller.user_email:
            raise PermissionDeniedError(
                f"User {self.caller.user_id} has no e-mail address in the signed context",
                hint="Give the CRM user an e-mail address, then open the panel again.",
            )
        return Person(self.caller.user_email)

    def require_admin(self) -> None:
        if not self.admin:
            raise PermissionDeniedError(
                f"{self.caller.user_email or self.caller.user_id} is not a crm-meetings admin",
                hint="Ask an admin listed in the web settings, or use an org API key.",
            )


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """What authentication needs to see of an HTTP request (framework-free, testable)."""

    method: str
    url: str
    path_and_query: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    body: bytes


class SessionCodec:
    """Signs and reads the session cookie; the expiry is inside the signed payload."""

    def __init__(self, secret: str, *, ttl: timedelta, clock: Clock) -> None:
        self._serializer = URLSafeSerializer(secret, salt=_SESSION_SALT)
        self.ttl = ttl
        self._clock = clock

    def issue(self, caller: CallerContext, *, admin: bool) -> tuple[str, Principal]:
        """The cookie value and the principal it stands for (with a fresh CSRF token)."""
        csrf = secrets.token_urlsafe(24)
        expires = int((utc(self._clock()) + self.ttl).timestamp())
        record = [caller.record.object_type, caller.record.record_id] if caller.record else None
        payload = {
            "crm": caller.crm.value,
            "org": caller.org_id,
            "user": caller.user_id,
            "email": caller.user_email,
            "profile": caller.profile,
            "record": record,
            "admin": admin,
            "csrf": csrf,
            "exp": expires,
        }
        value = self._serializer.dumps(payload)
        return str(value), Principal(caller, AuthMethod.SESSION, admin, csrf)

    def read(self, value: str) -> Principal:
        try:
            payload = self._serializer.loads(value)
        except (BadSignature, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UnauthenticatedError("The session cookie is not valid.") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            raise UnauthenticatedError("The session cookie is not valid.")
        if payload["exp"] <= int(utc(self._clock()).timestamp()):
            raise UnauthenticatedError("Your session has expired.")
        record = payload.get("record")
        caller = CallerContext(
            CrmKind(payload["crm"]),
            str(payload["org"]),
            str(payload["user"]),
            payload.get("email"),
            RecordRef(record[0], record[1]) if record else None,
            payload.get("profile"),
        )
        return Principal(caller, AuthMethod.SESSION, bool(payload.get("admin")), payload["csrf"])


class Authenticator:
    """Turns an :class:`IncomingRequest` into a :class:`Principal`, or raises 401/403."""

    def __init__(
        self,
        web: WebSettings,
        *,
        store: Store,
        clock: Clock,
        sessions: SessionCodec,
        replay: ReplayCheck,
        admins: Collection[str],
        orgs: OrgBinding,
    ) -> None:
        self._web = web
        self._orgs = orgs
        self._store = store
        self._clock = clock
        self.sessions = sessions
        self.replay = replay
        self._admins = frozenset(a.lower() for a in admins)

    def is_admin(self, email: str | None) -> bool:
        return bool(email) and str(email).lower() in self._admins

    def authenticate(self, request: IncomingRequest) -> Principal:
        headers = {k.lower(): v for k, v in request.headers.items()}
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, key = authorization.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise UnauthenticatedError("The Authorization header must be 'Bearer <API key>'.")
            return self._api_key(key.strip())
        if "x-hubspot-signature-v3" in headers:
            caller = self.hubspot(request)
            return Principal(caller, AuthMethod.HUBSPOT, self.is_admin(caller.user_email))
        if ZOHO_HEADER.lower() in headers:
            caller = self.zoho(headers[ZOHO_HEADER.lower()])
            return Principal(caller, AuthMethod.ZOHO, self.is_admin(caller.user_email))
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            principal = self.sessions.read(cookie)
            # issued before the org was bound, or with the caller's own spelling of it
            principal = replace(principal, caller=self._orgs.bind(principal.caller))
            if request.method.upper() not in SAFE_METHODS:
                _check_csrf(principal, headers.get(CSRF_HEADER.lower()))
            return principal
        raise UnauthenticatedError(
            "This request carries no session, signature or API key.",
            hint="Open the panel from the CRM record page, or send 'Authorization: Bearer <key>'.",
        )

    # --- each proof -------------------------------------------------------------------

    def canvas(self, signed_request: str) -> CallerContext:
        """Verify a Salesforce Canvas signed request (the panel's POST)."""
        secret = _secret(self._web.salesforce_canvas_secret, "Salesforce Canvas consumer secret")
        caller, _ = verify_canvas(
            signed_request, secret.encode(), now=self._clock(), replay=self.replay
        )
        return self._orgs.bind(caller)

    def hubspot(self, request: IncomingRequest) -> CallerContext:
        """Verify a HubSpot v3 signature over the URI HubSpot called."""
        secret = _secret(self._web.hubspot_client_secret, "HubSpot client secret")
        uri = request.url
        if self._web.public_url:
            uri = self._web.public_url + request.path_and_query
        verify_hubspot_v3(
            secret,
            method=request.method,
            uri=uri,
            body=request.body,
            headers=request.headers,
            now=self._clock(),
            replay=self.replay,
        )
        query = _query(request.path_and_query)
        portal, user = query.get("portalId", ""), query.get("userId", "")
        if not portal or not user:
            raise UnauthenticatedError("The signed HubSpot URI names no portalId or userId.")
        record = None
        if query.get("associatedObjectType") and query.get("associatedObjectId"):
            record = RecordRef(query["associatedObjectType"], query["associatedObjectId"])
        email = query.get("userEmail")
        caller = CallerContext(
            CrmKind.HUBSPOT, portal, user, email, record, self._hubspot_profile(email)
        )
        return self._orgs.bind(caller)

    def _hubspot_profile(self, email: str | None) -> str | None:
        """HubSpot's signed URI names no role: ``[web] hubspot_profiles`` maps the user."""
        if not email:
            return None
        profiles = {k.lower(): v for k, v in self._web.hubspot_profiles.items()}
        return profiles.get(email.lower())

    def zoho(self, token: str) -> CallerContext:
        secret = _secret(self._web.zoho_widget_secret, "Zoho widget secret").encode()
        caller = verify_widget_token(
            token, lambda _org: secret, now=self._clock(), replay=self.replay
        )
        return self._orgs.bind(caller)

    def _api_key(self, key: str) -> Principal:
        digest = hash_api_key(key)
        with self._store.reading() as uow:
            row = uow.session.scalars(
                sa.select(ApiKeyRow).where(ApiKeyRow.key_hash == digest)
            ).one_or_none()
        if row is None or not verify_api_key(key, row.key_hash):
            raise UnauthenticatedError("The API key is not known.")
        if row.revoked_at is not None:
            raise UnauthenticatedError(
                "The API key was revoked.", hint="Ask an admin for a new key."
            )
        now = self._clock()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
            # a write per request would queue every API read behind the store's write lock
            with self._store.transaction() as uow:
                uow.session.execute(
                    sa.update(ApiKeyRow).where(ApiKeyRow.id == row.id).values(last_used_at=now)
                )
        caller = CallerContext(CrmKind(row.crm), row.org_id, f"api-key:{row.id}", row.actor_email)
        return Principal(self._orgs.bind(caller), AuthMethod.API_KEY, admin=True)


def _check_csrf(principal: Principal, sent: str | None) -> None:
    expected = principal.csrf or ""
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise PermissionDeniedError(
            "The CSRF token is missing or does not match this session.",
            hint=f"Send the page's token in the {CSRF_HEADER} header; reload the panel if needed.",
        )


def _secret(value: object, what: str) -> str:
    raw: Callable[[], str] | None = getattr(value, "get_secret_value", None)
    text = raw() if raw is not None else ""
    if not text:
        raise UnauthenticatedError(
            f"The {what} is not configured, so these requests cannot be verified.",
            hint="Set it in the [web] section of crm-meetings.toml.",
        )
    return text


def _query(path_and_query: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(path_and_query).query, keep_blank_values=True))
