"""One exception tree for crm-meetings; every error says what happened and what to do.

    CrmMeetingsError
    ├── ConfigurationError          bad or missing setting (carries the key path)
    ├── ValidationError             bad input (carries the field name)
    ├── NotFoundError               a record, meeting or object does not exist
    ├── ConflictError               someone changed it first / it is in the wrong state
    ├── UnauthenticatedError        an inbound request's signature or key did not verify
    ├── PermissionDeniedError       the caller may not do this
    ├── NoSessionExistsError        the meeting was never started, so there is no history
    ├── StoreError                  the database cannot be reached or migrated
    └── RemoteError                 a vendor API answered with an error (vendor, status, code)
        ├── AuthError
        │   ├── AuthExpiredError    the access token expired (refreshable)
        │   └── RefreshFailedError  refreshing failed: the admin must re-authorise
        └── RateLimitedError        the vendor's limit was hit (carries retry_after)

Vendor-specific exceptions are translated onto this tree at one boundary per connector;
the web layer turns these classes into HTTP responses in one handler (``http_status``).
"""

from __future__ import annotations

from typing import ClassVar

from crm_meetings.redaction import redact

__all__ = [
    "AuthError",
    "AuthExpiredError",
    "ConfigurationError",
    "ConflictError",
    "CrmMeetingsError",
    "NoSessionExistsError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderNotConfiguredError",
    "RateLimitedError",
    "RefreshFailedError",
    "RemoteError",
    "StoreError",
    "UnauthenticatedError",
    "ValidationError",
]


class CrmMeetingsError(Exception):
    """Base of every error we raise on purpose.

    ``message`` says what happened, ``hint`` what to do next. Both are redacted, so an
    error can be logged or shown to a user without leaking a token.
    """

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    default_hint: ClassVar[str] = "See the logs for details, or run `crm-meetings doctor`."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = redact(message)
        self.hint = redact(hint if hint is not None else self.default_hint)
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description: stable code, human message, hint."""
        return {"code": self.code, "message": self.message, "hint": self.hint}


class ConfigurationError(CrmMeetingsError):
    """A setting is missing or wrong; ``key`` is its dotted path, e.g. ``sync.timezone``."""

    code = "configuration_error"
    default_hint = "Fix the setting in crm-meetings.toml or the CRM_MEETINGS_* environment."

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message, hint=hint)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "key": self.key}


class ProviderNotConfiguredError(ConfigurationError):
    """A meeting's conferencing provider is not configured here: the action cannot reach
    the provider meeting (HTTP 503: the service lacks a part, the request is fine)."""

    code = "provider_not_configured"
    http_status = 503


class ValidationError(CrmMeetingsError, ValueError):
    """Input was rejected; ``field`` names the offending field."""

    code = "validation_error"
    http_status = 422
    default_hint = "Correct the value and try again."

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", hint=hint)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "field": self.field}


class NotFoundError(CrmMeetingsError, LookupError):
    """A record, meeting or object does not exist (or is not visible to the caller)."""

    code = "not_found"
    http_status = 404
    default_hint = "Check the id; the record may have been deleted in the CRM."


class ConflictError(CrmMeetingsError):
    """The target changed since it was read, or is in a state that forbids the action."""

    code = "conflict"
    http_status = 409
    default_hint = "Reload the meeting to see its current state, then try again."


class UnauthenticatedError(CrmMeetingsError):
    """An inbound request could not be authenticated (bad, stale or replayed signature)."""

    code = "unauthenticated"
    http_status = 401
    default_hint = "Open the panel again from the CRM record page to get a fresh signed request."


class PermissionDeniedError(CrmMeetingsError, PermissionError):
    """The caller is authenticated but not allowed to do this."""

    code = "permission_denied"
    http_status = 403
    default_hint = "Ask the meeting's organizer or your CRM admin for access."


class NoSessionExistsError(CrmMeetingsError):
    """The meeting was never started, so there is no session history to sync."""

    code = "no_session_exists"
    http_status = 404
    default_hint = "Sync again after the meeting has been started at least once."

    def __init__(self, meeting_id: str, *, hint: str | None = None) -> None:
        self.meeting_id = meeting_id
        super().__init__(f"No session exists for meeting {meeting_id}.", hint=hint)


class StoreError(CrmMeetingsError):
    """The database cannot be reached, read or migrated."""

    code = "store_error"
    http_status = 503
    default_hint = (
        "Check [store].url and that the database is running, then `crm-meetings db upgrade`."
    )


class RemoteError(CrmMeetingsError):
    """A vendor API answered with an error we could not handle."""

    code = "remote_error"
    http_status = 502
    default_hint = "Try again later; if it persists, run `crm-meetings doctor`."

    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        status: int | None = None,
        vendor_code: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.vendor = vendor
        self.status = status
        self.vendor_code = vendor_code
        self.request_id = request_id
        details = ", ".join(
            part
            for part in (
                f"HTTP {status}" if status is not None else "",
                vendor_code or "",
                f"request id {request_id}" if request_id else "",
            )
            if part
        )
        text = f"{vendor}: {message}" + (f" ({details})" if details else "")
        super().__init__(text, hint=hint)

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "vendor": self.vendor,
            "status": self.status,
            "vendor_code": self.vendor_code,
            "request_id": self.request_id,
        }


class AuthError(RemoteError):
    """The vendor refused our credentials."""

    code = "auth_error"
    default_hint = "Re-authorise crm-meetings with the vendor, then run `crm-meetings doctor`."


class AuthExpiredError(AuthError):
    """The access token expired; callers refresh once and retry."""

    code = "auth_expired"
    default_hint = "The token will be refreshed automatically; if this persists, re-authorise."


class RefreshFailedError(AuthError):
    """Refreshing the access token failed; a human must re-authorise."""

    code = "refresh_failed"
    default_hint = (
        "The refresh token or client credentials were rejected: re-authorise the connected app "
        "and update the secret, then run `crm-meetings doctor`."
    )


class RateLimitedError(RemoteError):
    """The vendor's rate limit or daily budget was hit; ``retry_after`` is in seconds."""

    code = "rate_limited"
    http_status = 429
    default_hint = "Wait and try again; the nightly sync resumes from its checkpoint."

    def __init__(
        self,
        message: str,
        *,
        vendor: str,
        retry_after: float | None = None,
        status: int | None = 429,
        vendor_code: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message,
            vendor=vendor,
            status=status,
            vendor_code=vendor_code,
            request_id=request_id,
            hint=hint
            or (
                f"Wait {retry_after:g} s and try again."
                if retry_after is not None
                else self.default_hint
            ),
        )

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": self.retry_after}
