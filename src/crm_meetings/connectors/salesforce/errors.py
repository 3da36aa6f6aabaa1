"""Salesforce errors onto :mod:`crm_meetings.errors`: the one table, in one place.

Salesforce answers errors with a JSON list of ``{message, errorCode, fields}`` (REST
resources) or, inside sObject Collections results, ``{statusCode, message, fields}``.
simple-salesforce raises ``SalesforceError`` subclasses carrying ``status`` and the
parsed ``content``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from simple_salesforce.exceptions import SalesforceError

from crm_meetings.connectors.salesforce.mapping import model_field
from crm_meetings.errors import (
    AuthExpiredError,
    ConflictError,
    CrmMeetingsError,
    NotFoundError,
    RateLimitedError,
    RemoteError,
    ValidationError,
)

__all__ = ["VENDOR", "record_error", "translate"]

VENDOR: Final = "salesforce"
_NOT_FOUND: Final = frozenset({"NOT_FOUND", "ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
_CONFLICT: Final = frozenset({"ENTITY_IS_LOCKED", "UNABLE_TO_LOCK_ROW"})
_SETUP_HINT: Final = (
    "Deploy the crm-meetings fields and objects (README: Salesforce setup), "
    "then run `crm-meetings doctor`."
)


def _first(content: object) -> tuple[str, str, Sequence[str]]:
    """``(code, message, fields)`` of the first error in a Salesforce error body."""
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        error: Mapping[str, Any] = content[0]
        code = str(error.get("errorCode") or error.get("statusCode") or "UNKNOWN_EXCEPTION")
        return code, str(error.get("message", "")), list(error.get("fields") or [])
    return "UNKNOWN_EXCEPTION", str(content)[:500], []


def _classify(
    status: int | None, code: str, message: str, fields: Sequence[str]
) -> CrmMeetingsError:
    if status == 401 or code == "INVALID_SESSION_ID":
        return AuthExpiredError(message, vendor=VENDOR, status=status, vendor_code=code)
    if code == "REQUEST_LIMIT_EXCEEDED" or status == 429:
        return RateLimitedError(message, vendor=VENDOR, status=status, vendor_code=code)
    if status == 404 or code in _NOT_FOUND:
        return NotFoundError(f"salesforce: {message} ({code})")
    if code in _CONFLICT:
        return ConflictError(f"salesforce: {message} ({code})")
    if fields:
        return ValidationError(model_field(fields[0]), f"{code}: {message} ({fields[0]})")
    if code in ("INVALID_FIELD", "INVALID_TYPE", "NO_SUCH_COLUMN"):
        return RemoteError(
            message, vendor=VENDOR, status=status, vendor_code=code, hint=_SETUP_HINT
        )
    return RemoteError(message or code, vendor=VENDOR, status=status, vendor_code=code)


def translate(error: SalesforceError) -> CrmMeetingsError:
    """The crm-meetings error for an SDK exception (status and vendor code kept)."""
    code, message, fields = _first(error.content)
    return _classify(error.status, code, message, fields)


def record_error(errors: Sequence[Mapping[str, Any]]) -> CrmMeetingsError:
    """The error of one record inside a collection result (a 200 can hold failures)."""
    code, message, fields = _first(list(errors))
    return _classify(None, code, message, fields)
