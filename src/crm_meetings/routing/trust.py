"""The owner's trust circle: who may book directly, who waits for approval.

As Julie Desk's assistant works: at sign-up the owner's own domain is trusted; a
restricted circle trusts listed addresses and domains; "trust everyone" handles every
request directly; a restricted, empty circle sends every outside request for approval.
An e-mail request must have the owner in copy, or it is refused with the reason.

Identity is the bare address only (display names never count). Domains match exactly,
case-insensitively, after IDNA normalisation: ``france.com`` does not trust
``evil-france.com`` nor ``mail.france.com``; a subdomain is trusted only through an
explicit ``*.france.com`` entry.

Approval links are signed (HMAC-SHA256), expiring and single-use: :func:`sign_approval`
and :func:`verify_approval` check signature and expiry; the store records used tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from crm_meetings.errors import PermissionDeniedError, ValidationError
from crm_meetings.model import normalize_email, utc

__all__ = [
    "ApprovalAction",
    "Decision",
    "TrustCircle",
    "TrustMode",
    "decide",
    "normalize_domain",
    "sign_approval",
    "sign_link",
    "verify_approval",
    "verify_link",
]


class TrustMode(StrEnum):
    RESTRICTED = "restricted"
    EVERYONE = "everyone"


class Decision(StrEnum):
    ACCEPT = "accept"  # trusted: offer the owner's free slots
    NEEDS_APPROVAL = "needs_approval"  # queued; the owner gets approve/decline links
    REFUSE_NOT_IN_COPY = "refuse_not_in_copy"  # reply explaining the owner must be in Cc


def normalize_domain(domain: str) -> str:
    """Lower-case ASCII (IDNA) form; ``*.`` prefixes are kept for subdomain entries."""
    text = domain.strip().rstrip(".").lower()
    wildcard = text.startswith("*.")
    core = text[2:] if wildcard else text
    if not core or any(c in core for c in " @/\\\r\n"):
        raise ValidationError("domain", f"{domain!r} is not a domain name")
    try:
        ascii_form = core.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValidationError("domain", f"{domain!r} is not a valid domain name") from exc
    return f"*.{ascii_form}" if wildcard else ascii_form


def _domain_of(email: str) -> str:
    return normalize_domain(email.rsplit("@", 1)[1])


@dataclass(frozen=True, slots=True)
class TrustCircle:
    owner: str
    mode: TrustMode = TrustMode.RESTRICTED
    addresses: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "owner", normalize_email(self.owner, "owner"))
        object.__setattr__(
            self, "addresses", frozenset(normalize_email(a, "addresses") for a in self.addresses)
        )
        object.__setattr__(self, "domains", frozenset(normalize_domain(d) for d in self.domains))

    @classmethod
    def at_signup(cls, owner: str) -> TrustCircle:
        """The circle a new owner starts with: their own domain."""
        email = normalize_email(owner, "owner")
        return cls(owner=email, domains=frozenset({_domain_of(email)}))

    def trusts(self, sender: str) -> bool:
        if self.mode is TrustMode.EVERYONE:
            return True
        email = normalize_email(sender, "sender")
        if email == self.owner or email in self.addresses:
            return True
        domain = _domain_of(email)
        if domain in self.domains:
            return True
        return any(
            entry.startswith("*.") and domain.endswith("." + entry[2:]) for entry in self.domains
        )


def decide(circle: TrustCircle, sender: str, *, cc: Iterable[str] | None = None) -> Decision:
    """What to do with a request from ``sender``; ``cc`` is given for e-mail requests."""
    if cc is not None:
        copied = {normalize_email(a, "cc") for a in cc}
        if circle.owner not in copied:
            return Decision.REFUSE_NOT_IN_COPY
    return Decision.ACCEPT if circle.trusts(sender) else Decision.NEEDS_APPROVAL


class ApprovalAction(StrEnum):
    APPROVE = "approve"
    DECLINE = "decline"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_approval(
    secret: bytes,
    request_id: str,
    action: ApprovalAction,
    *,
    now: datetime,
    valid_for: timedelta = timedelta(days=3),
) -> str:
    """A URL-safe token for one approve/decline link; single use is the store's job."""
    payload = {
        "r": request_id,
        "a": ApprovalAction(action).value,
        "e": int((utc(now, "now") + valid_for).timestamp()),
    }
    return _seal(secret, payload)


def verify_approval(secret: bytes, token: str, *, now: datetime) -> tuple[str, ApprovalAction]:
    """``(request id, action)`` of a genuine, unexpired token; PermissionDeniedError else."""
    payload = _open(secret, token, now, "approval link", "the most recent approval e-mail")
    if "a" not in payload:
        raise PermissionDeniedError("This approval link is not genuine.")
    return str(payload["r"]), ApprovalAction(payload["a"])


def _purpose_key(secret: bytes, purpose: str) -> bytes:
    """A key of its own per purpose: a token made for one never verifies as another."""
    return hmac.new(secret, f"crm-meetings {purpose}".encode(), hashlib.sha256).digest()


def sign_link(
    secret: bytes, purpose: str, subject: str, *, now: datetime, valid_for: timedelta
) -> str:
    """A URL-safe, expiring token naming ``subject`` for one ``purpose`` (e.g. the slot
    choice of a booking request); unlike approval links, it may be used until it expires."""
    expires = int((utc(now, "now") + valid_for).timestamp())
    return _seal(_purpose_key(secret, purpose), {"s": subject, "e": expires})


def verify_link(secret: bytes, purpose: str, token: str, *, now: datetime) -> str:
    """The subject of a genuine, unexpired :func:`sign_link` token; PermissionDeniedError
    else."""
    payload = _open(_purpose_key(secret, purpose), token, now, "link", "the most recent e-mail")
    return str(payload["s"])


def _seal(key: bytes, payload: Mapping[str, object]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def _open(key: bytes, token: str, now: datetime, what: str, where: str) -> dict[str, Any]:
    body, _, mac = token.partition(".")
    try:
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
        genuine = hmac.compare_digest(expected, _unb64(mac))
    except (UnicodeError, ValueError):
        genuine = False
    if not genuine:
        raise PermissionDeniedError(
            f"This {what} is not genuine.", hint=f"Use the link from {where}, unmodified."
        )
    payload = json.loads(_unb64(body))
    if datetime.fromtimestamp(int(payload["e"]), UTC) <= utc(now, "now"):
        raise PermissionDeniedError(
            f"This {what} has expired.",
            hint="Ask the requester to send the booking request again."
            if what == "approval link"
            else "Ask for a new booking link.",
        )
    assert isinstance(payload, dict)
    return payload
