"""The error tree says what to do, and never leaks a secret."""

from __future__ import annotations

import pytest

from crm_meetings.errors import (
    AuthExpiredError,
    ConfigurationError,
    CrmMeetingsError,
    NoSessionExistsError,
    RateLimitedError,
    RefreshFailedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.redaction import MASK, redact, register_secret


def test_every_error_carries_a_hint_and_a_stable_code() -> None:
    errors: list[CrmMeetingsError] = [
        ConfigurationError("must be 0-23", key="sync.hour"),
        ValidationError("end", "is before start"),
        NoSessionExistsError("m1"),
        RemoteError("boom", vendor="salesforce", status=500, vendor_code="UNKNOWN_EXCEPTION"),
        RefreshFailedError("invalid_grant", vendor="zoho", status=400),
        RateLimitedError("slow down", vendor="hubspot", retry_after=10),
    ]
    for error in errors:
        assert error.hint
        assert error.code != "error"
        assert str(error).startswith(error.message)
        assert error.to_dict()["code"] == error.code


def test_no_session_exists_answers_in_the_words_users_expect() -> None:
    assert str(NoSessionExistsError("m1")).startswith("No session exists")


def test_remote_error_names_vendor_status_code_and_request_id() -> None:
    error = RemoteError(
        "Session expired",
        vendor="salesforce",
        status=401,
        vendor_code="INVALID_SESSION_ID",
        request_id="abc",
    )
    assert error.message == (
        "salesforce: Session expired (HTTP 401, INVALID_SESSION_ID, request id abc)"
    )
    assert isinstance(AuthExpiredError("x", vendor="v"), RemoteError)


def test_rate_limited_hint_says_how_long_to_wait() -> None:
    assert "Wait 7 s" in RateLimitedError("limit", vendor="zoom", retry_after=7).hint


def test_configuration_error_names_the_key() -> None:
    error = ConfigurationError("unknown key", key="smtp.hots")
    assert error.message.startswith("smtp.hots: ")
    assert error.to_dict()["key"] == "smtp.hots"


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer 00Dxx!AQ4AQFk.secret-token", "00Dxx!AQ4AQFk.secret-token"),
        ("Zoho-oauthtoken 1000.abcdef.123456", "1000.abcdef.123456"),
        ('{"access_token": "eyJhbGciOi.JIUzI1"}', "eyJhbGciOi.JIUzI1"),
        ("refresh_token=1000.refresh.xyz&grant_type=refresh_token", "1000.refresh.xyz"),
        ("postgresql://app:hunter2secret@db:5432/prod", "hunter2secret"),
    ],
)
def test_token_shapes_are_masked(text: str, leak: str) -> None:
    masked = redact(text)
    assert leak not in masked
    assert MASK in masked


def test_registered_secrets_are_masked_everywhere_including_errors() -> None:
    register_secret("s3cr3t-client-value")
    error = RemoteError("login failed with s3cr3t-client-value", vendor="zoom")
    assert "s3cr3t-client-value" not in str(error)
    assert "s3cr3t-client-value" not in redact("any text s3cr3t-client-value")


@pytest.mark.parametrize(
    "text",
    [
        "smtp.password: required when smtp.username is set",
        "JWT bearer sign-in as rep@x.com refused",
    ],
)
def test_prose_naming_a_secret_or_a_scheme_is_left_readable(text: str) -> None:
    assert redact(text) == text


def test_short_values_are_not_registered_as_secrets() -> None:
    register_secret("abc")
    assert redact("abc def") == "abc def"
