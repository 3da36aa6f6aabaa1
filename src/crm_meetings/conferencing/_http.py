"""The one HTTP client both conferencing providers use: tokens, retries, accounting, errors.

:meth:`ApiClient.call` is the single place where a provider request

1. gets a bearer token (fetched lazily from the grant, refreshed ahead of expiry),
2. is sent over httpx and counted in :class:`~crm_meetings.transport.CallCounter` under its
   endpoint template (``/v2/past_meetings/{meetingId}/instances``) — every attempt counts,
3. on a 401 refreshes the token once and is sent again; a second 401 or a refused refresh
   is :class:`~crm_meetings.errors.RefreshFailedError`,
4. is retried by :func:`crm_meetings.transport.retrying` (429 after ``Retry-After``; 5xx and
   connection failures with backoff, for idempotent requests only),
5. has a vendor error translated onto :mod:`crm_meetings.errors` by :func:`vendor_error`.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from crm_meetings.conferencing.oauth import Grant
from crm_meetings.errors import (
    AuthError,
    AuthExpiredError,
    ConflictError,
    CrmMeetingsError,
    NotFoundError,
    RateLimitedError,
    RefreshFailedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.transport import CallCounter, RetryPolicy, retrying

__all__ = [
    "ApiClient",
    "Encoded",
    "ErrorShape",
    "HttpSettings",
    "retry_after_seconds",
    "vendor_error",
]

T = TypeVar("T")
TOKEN_ENDPOINT: Final = "/oauth/token"  # noqa: S105 (a path, not a secret)
EXPIRY_MARGIN: Final = timedelta(seconds=60)


class Encoded(str):
    """A path segment that is already percent-encoded (e.g. a double-encoded Zoom UUID)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Where a provider's API and token endpoint are and how to reach them.

    ``verify`` is an SSLContext, a CA bundle path, or ``True`` for the system store; the
    sandbox passes its test CA. ``sleep`` replaces ``time.sleep`` between retries (tests).
    """

    api_url: str
    token_url: str
    verify: ssl.SSLContext | str | Path | bool = True
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] | None = None
    transport: httpx.BaseTransport | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def ssl_verify(self) -> ssl.SSLContext | bool:
        if isinstance(self.verify, (str, Path)):
            return ssl.create_default_context(cafile=str(self.verify))
        return self.verify


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """Where a vendor puts its error code and message in an error body (keys tried in order)."""

    code_keys: Sequence[str]
    message_keys: Sequence[str]
    request_id_header: str | None = None
    field_list_key: str | None = None  # e.g. Zoom's "errors": [{"field", "message"}]


#: The OAuth token endpoints' bodies (RFC 6749 §5.2, plus Zoom's ``reason``).
OAUTH_ERRORS: Final = ErrorShape(("error",), ("error_description", "reason"))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` as seconds: a number, an HTTP date or an ISO 8601 instant."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    when: datetime | None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _first(body: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = body.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def vendor_error(
    vendor: str, response: httpx.Response, shape: ErrorShape, *, now: datetime
) -> CrmMeetingsError:
    """The error-tree exception for a vendor's error response."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, Mapping) else {}
    code = _first(body, shape.code_keys)
    message = _first(body, shape.message_keys) or response.reason_phrase or "error"
    request_id = response.headers.get(shape.request_id_header) if shape.request_id_header else None
    status = response.status_code
    where = f"{response.request.method} {response.request.url.path}"
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), now)
        return RateLimitedError(
            message, vendor=vendor, retry_after=retry_after, vendor_code=code,
            request_id=request_id,
        )  # fmt: skip
    if status == 401:
        return AuthExpiredError(
            message, vendor=vendor, status=status, vendor_code=code, request_id=request_id
        )
    if status == 403:
        return AuthError(
            message, vendor=vendor, status=status, vendor_code=code, request_id=request_id
        )
    if status == 404:
        return NotFoundError(f"{vendor}: {message} ({where}, code {code})")
    if status == 409:
        return ConflictError(f"{vendor}: {message} ({where}, code {code})")
    if status in (400, 422):
        field_name = "request"
        details = body.get(shape.field_list_key) if shape.field_list_key else None
        if isinstance(details, list) and details and isinstance(details[0], Mapping):
            field_name = str(details[0].get("field") or field_name)
            message = f"{message} {details[0].get('message', '')}".strip()
        return ValidationError(field_name, f"{vendor} refused {where}: {message} (code {code})")
    return RemoteError(
        message, vendor=vendor, status=status, vendor_code=code, request_id=request_id
    )


def _expand(template: str, path: Mapping[str, str]) -> str:
    values = {
        name: value if isinstance(value, Encoded) else quote(value, safe="")
        for name, value in path.items()
    }
    return template.format(**values)


class ApiClient:
    """A vendor API over httpx with OAuth, retries, call accounting and error mapping."""

    def __init__(
        self,
        vendor: str,
        settings: HttpSettings,
        grant: Grant,
        errors: ErrorShape,
        *,
        calls: CallCounter | None = None,
    ) -> None:
        self.vendor = vendor
        self.settings = settings
        self.grant = grant
        self.errors = errors
        self.calls = calls if calls is not None else CallCounter()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self._http = httpx.Client(
            base_url=settings.api_url,
            verify=settings.ssl_verify(),
            timeout=settings.timeout,
            transport=settings.transport,
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": "crm-meetings"},
        )

    def close(self) -> None:
        self._http.close()

    # --- tokens -------------------------------------------------------------------------

    def token(self) -> str:
        """A live access token (fetched on first use and shortly before it expires)."""
        with self._lock:
            current, expires = self._token, self._expires_at
        if current is not None and (expires is None or self.settings.clock() < expires):
            return current
        return self.refresh()

    def refresh(self) -> str:
        """Exchange the grant for a new access token; a refusal is RefreshFailedError."""
        request = self.grant.token_request()

        def once() -> httpx.Response:
            response = self._send(
                "POST",
                TOKEN_ENDPOINT,
                self.settings.token_url,
                params=dict(request.params) or None,
                data=dict(request.form) if request.form is not None else None,
                auth=request.auth,
            )
            if response.status_code in (400, 401, 403):
                error = vendor_error(self.vendor, response, OAUTH_ERRORS, now=self._now())
                raise RefreshFailedError(
                    f"the token endpoint refused the credentials: {error.message}",
                    vendor=self.vendor,
                    status=response.status_code,
                )
            if response.is_error:
                raise vendor_error(self.vendor, response, OAUTH_ERRORS, now=self._now())
            return response

        body = self._retried(once, idempotent=True, what=f"POST {TOKEN_ENDPOINT}").json()
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise RefreshFailedError("the token response has no access_token", vendor=self.vendor)
        self.grant.accept(body)
        expires_in = body.get("expires_in")
        expires_at = (
            self._now() + timedelta(seconds=float(expires_in)) - EXPIRY_MARGIN
            if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool)
            else None
        )
        with self._lock:
            self._token, self._expires_at = token, expires_at
        return token

    # --- requests -----------------------------------------------------------------------

    def call(
        self,
        method: str,
        endpoint: str,
        *,
        path: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send ``method endpoint`` (a template filled from ``path``); raise on any error.

        ``idempotent=False`` (creates) is retried only on 429, never on 5xx or a lost
        connection, so a create the vendor may have performed is not sent twice.
        """
        url = _expand(endpoint, path or {})
        refreshed = False

        def once() -> httpx.Response:
            nonlocal refreshed
            response = self._send(method, endpoint, url, params=params, json=json)
            if response.status_code == 401:
                if refreshed:
                    raise RefreshFailedError(
                        "the API still refuses a freshly refreshed token", vendor=self.vendor
                    )
                refreshed = True
                self.refresh()
                response = self._send(method, endpoint, url, params=params, json=json)
                if response.status_code == 401:
                    raise RefreshFailedError(
                        "the API refuses the refreshed token", vendor=self.vendor, status=401
                    )
            if response.is_error:
                raise vendor_error(self.vendor, response, self.errors, now=self._now())
            return response

        return self._retried(once, idempotent=idempotent, what=f"{method} {endpoint}")

    def _retried(self, once: Callable[[], T], *, idempotent: bool, what: str) -> T:
        try:
            for attempt in retrying(
                idempotent=idempotent, policy=self.settings.retry, sleep=self.settings.sleep
            ):
                with attempt:
                    return once()
        except (ConnectionError, TimeoutError) as error:
            raise RemoteError(
                f"could not reach the API for {what}: {error}",
                vendor=self.vendor,
                hint="Check the network and the provider's base URL, then try again.",
            ) from error
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send(
        self,
        method: str,
        endpoint: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP exchange, counted; transport failures become builtin errors to retry."""
        headers = {} if auth is not None else {"Authorization": f"Bearer {self.token()}"}
        try:
            response = self._http.request(
                method, url, params=params, json=json, data=data, headers=headers, auth=auth
            )
        except httpx.TimeoutException as error:
            self.calls.record(self.vendor, endpoint, method, None)
            raise TimeoutError(f"{method} {endpoint} timed out") from error
        except httpx.TransportError as error:
            self.calls.record(self.vendor, endpoint, method, None)
            raise ConnectionError(f"{method} {endpoint}: {error}") from error
        self.calls.record(self.vendor, endpoint, method, response.status_code)
        return response

    def _now(self) -> datetime:
        return self.settings.clock()
