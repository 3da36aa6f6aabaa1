"""OAuth 2.0 grants the conferencing providers use to get access tokens.

A grant only says what to send to the token endpoint (:meth:`Grant.token_request`) and what
to keep from the answer (:meth:`Grant.accept`); :class:`~crm_meetings.conferencing._http.ApiClient`
sends it, counts the call, retries transient failures and turns a refusal into
:class:`~crm_meetings.errors.RefreshFailedError`.

- Zoom Server-to-Server OAuth: :class:`AccountCredentials`
  (``POST https://zoom.us/oauth/token?grant_type=account_credentials&account_id=…``, Basic auth).
- GoTo: :class:`RefreshTokenGrant` (``POST https://authentication.logmeininc.com/oauth/token``,
  form ``grant_type=refresh_token``, Basic auth); GoTo may rotate the refresh token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["AccountCredentials", "Grant", "RefreshTokenGrant", "TokenRequest"]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What to POST to the token endpoint."""

    auth: tuple[str, str]  # HTTP Basic: client id and secret
    params: Mapping[str, str] = field(default_factory=dict)  # query string
    form: Mapping[str, str] | None = None  # application/x-www-form-urlencoded body


class Grant(Protocol):
    def token_request(self) -> TokenRequest: ...

    def accept(self, body: Mapping[str, Any]) -> None:
        """Keep what the token response changes (a rotated refresh token)."""
        ...


@dataclass(frozen=True, slots=True)
class AccountCredentials:
    """Zoom Server-to-Server OAuth: account id, client id and client secret."""

    account_id: str
    client_id: str
    client_secret: str = field(repr=False)

    def token_request(self) -> TokenRequest:
        return TokenRequest(
            auth=(self.client_id, self.client_secret),
            params={"grant_type": "account_credentials", "account_id": self.account_id},
        )

    def accept(self, body: Mapping[str, Any]) -> None:
        return None


@dataclass(slots=True)
class RefreshTokenGrant:
    """A refresh token obtained once by an authorization-code consent.

    ``on_rotate`` is called with the new refresh token when the vendor issues one, so the
    caller can persist it.
    """

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    on_rotate: Callable[[str], None] | None = None

    def token_request(self) -> TokenRequest:
        return TokenRequest(
            auth=(self.client_id, self.client_secret),
            form={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
        )

    def accept(self, body: Mapping[str, Any]) -> None:
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self.refresh_token:
            self.refresh_token = rotated
            if self.on_rotate is not None:
                self.on_rotate(rotated)
