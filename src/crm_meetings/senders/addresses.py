"""Organisation sender addresses, as Zoho CRM's organisation e-mails work — the rules, pure.

- At most :data:`MAX_ADDRESSES` per organisation, each with a display name and the
  profiles (roles) allowed to send from it.
- Adding one issues a confirmation code sent to that address. The code is valid for
  :data:`CODE_VALIDITY`, single-use, compared in constant time, with at most
  :data:`MAX_ATTEMPTS` wrong tries; resending issues a new code and voids the old one.
  Only the code's hash is kept.
- The address itself cannot be edited; only its display name, reply-to and profiles.
- Deleting an address that is in use requires a confirmed replacement, which takes over
  every use (:func:`plan_delete` lists the moves; the store applies them in one
  transaction).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from crm_meetings.errors import ConflictError, PermissionDeniedError, ValidationError
from crm_meetings.model import normalize_email, utc

__all__ = [
    "CODE_VALIDITY",
    "MAX_ADDRESSES",
    "MAX_ATTEMPTS",
    "AddressStatus",
    "OrgAddress",
    "Use",
    "add_address",
    "confirm",
    "edit",
    "new_code",
    "plan_delete",
    "require_sender",
    "resend",
    "try_confirm",
]

MAX_ADDRESSES: Final = 10
CODE_VALIDITY: Final = timedelta(days=15)
MAX_ATTEMPTS: Final = 5
_CODE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class AddressStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


def new_code() -> str:
    """An 8-character confirmation code, easy to type from an e-mail."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))


def _hash(address_id: str, code: str) -> str:
    normalized = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(f"{address_id}:{normalized}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OrgAddress:
    id: str
    org_id: str
    email: str
    display_name: str
    profiles: frozenset[str]
    status: AddressStatus = AddressStatus.PENDING
    code_hash: str | None = None
    code_sent_at: datetime | None = None
    attempts: int = 0
    reply_to: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", normalize_email(self.email))
        name = self.display_name.strip()
        if not name or any(c in name for c in "\r\n\x00"):
            raise ValidationError("display_name", "must be one non-empty line")
        object.__setattr__(self, "display_name", name)
        if self.reply_to is not None:
            object.__setattr__(self, "reply_to", normalize_email(self.reply_to, "reply_to"))
        if not self.profiles:
            raise ValidationError(
                "profiles", "name at least one profile allowed to send from this address"
            )
        if self.code_sent_at is not None:
            object.__setattr__(self, "code_sent_at", utc(self.code_sent_at, "code_sent_at"))

    @property
    def confirmed(self) -> bool:
        return self.status is AddressStatus.CONFIRMED

    def expires_at(self) -> datetime | None:
        return self.code_sent_at + CODE_VALIDITY if self.code_sent_at else None


def add_address(
    existing: Sequence[OrgAddress],
    *,
    id: str,
    org_id: str,
    email: str,
    display_name: str,
    profiles: Iterable[str],
    now: datetime,
    reply_to: str | None = None,
    code_factory: Callable[[], str] = new_code,
) -> tuple[OrgAddress, str]:
    """A pending address and the code to e-mail to it."""
    mine = [a for a in existing if a.org_id == org_id]
    if len(mine) >= MAX_ADDRESSES:
        raise ConflictError(
            f"This organisation already has {MAX_ADDRESSES} sender addresses.",
            hint="Delete one you no longer use before adding another.",
        )
    wanted = normalize_email(email)
    if any(a.email == wanted for a in mine):
        raise ConflictError(
            f"{wanted} is already an organisation address.",
            hint="Resend its confirmation code instead of adding it again.",
        )
    code = code_factory()
    address = OrgAddress(
        id=id,
        org_id=org_id,
        email=wanted,
        display_name=display_name,
        profiles=frozenset(profiles),
        code_hash=_hash(id, code),
        code_sent_at=now,
        reply_to=reply_to,
    )
    return address, code


def resend(
    address: OrgAddress, *, now: datetime, code_factory: Callable[[], str] = new_code
) -> tuple[OrgAddress, str]:
    """A fresh code (the old one stops working) and a fresh set of attempts."""
    if address.confirmed:
        raise ConflictError(f"{address.email} is already confirmed.", hint="Nothing to resend.")
    code = code_factory()
    renewed = dataclasses.replace(
        address, code_hash=_hash(address.id, code), code_sent_at=utc(now, "now"), attempts=0
    )
    return renewed, code


def confirm(address: OrgAddress, code: str, *, now: datetime) -> OrgAddress:
    """The confirmed address, or raise the reason; use :func:`try_confirm` where the
    counted failed try must be persisted."""
    result, error = try_confirm(address, code, now=now)
    if error is not None:
        raise error
    return result


def try_confirm(
    address: OrgAddress, code: str, *, now: datetime
) -> tuple[OrgAddress, PermissionDeniedError | None]:
    """``(address to persist, error or None)``: failed tries are counted, not lost."""
    if address.confirmed or address.code_hash is None:
        return address, PermissionDeniedError(
            "This confirmation code was already used.",
            hint="The address is confirmed; no code is needed any more.",
        )
    expires = address.expires_at()
    if expires is not None and utc(now, "now") >= expires:
        return address, PermissionDeniedError(
            "This confirmation code has expired (codes are valid for 15 days).",
            hint="Resend the code and use the new one.",
        )
    if address.attempts >= MAX_ATTEMPTS:
        return address, PermissionDeniedError(
            f"Too many wrong codes ({MAX_ATTEMPTS}).",
            hint="Resend the code and use the new one.",
        )
    if not hmac.compare_digest(address.code_hash, _hash(address.id, code)):
        counted = dataclasses.replace(address, attempts=address.attempts + 1)
        left = MAX_ATTEMPTS - counted.attempts
        return counted, PermissionDeniedError(
            "That confirmation code is not right.",
            hint=f"Check the code in the e-mail; {left} tries left." if left else "Resend it.",
        )
    confirmed = dataclasses.replace(
        address, status=AddressStatus.CONFIRMED, code_hash=None, attempts=0
    )
    return confirmed, None


def edit(address: OrgAddress, **changes: Any) -> OrgAddress:
    """Change the display name, reply-to or profiles; the address itself is immutable."""
    allowed = {"display_name", "profiles", "reply_to"}
    for name, value in changes.items():
        if name == "email" and normalize_email(str(value)) != address.email:
            raise ValidationError(
                "email",
                "an organisation address cannot be changed",
                hint="Add the new address, confirm it, then delete this one with it as "
                "the replacement.",
            )
        if name not in allowed | {"email"}:
            raise ValidationError(name, "cannot be edited")
    updates = {k: v for k, v in changes.items() if k in allowed}
    if "profiles" in updates:
        updates["profiles"] = frozenset(updates["profiles"])
    return dataclasses.replace(address, **updates)


def require_sender(address: OrgAddress, profile: str) -> None:
    """Raise unless a user with ``profile`` may send from this confirmed address."""
    if not address.confirmed:
        raise PermissionDeniedError(
            f"{address.email} is not confirmed yet.",
            hint="Enter the confirmation code sent to it, or resend the code.",
        )
    if profile not in address.profiles:
        raise PermissionDeniedError(
            f"The {profile!r} profile may not send from {address.email}.",
            hint="Ask an admin to add your profile to this address, or pick another sender.",
        )


@dataclass(frozen=True, slots=True)
class Use:
    """One place an address is used: e.g. ("invitations", "default"), ("rotation", "r1")."""

    kind: str
    ref: str
    address_id: str


def plan_delete(
    address: OrgAddress, uses: Iterable[Use], replacement: OrgAddress | None
) -> list[Use]:
    """The uses moved to ``replacement`` when ``address`` is deleted (same transaction)."""
    mine = [u for u in uses if u.address_id == address.id]
    if not mine:
        return []
    if replacement is None:
        kinds = ", ".join(sorted({f"{u.kind} {u.ref}" for u in mine}))
        raise ConflictError(
            f"{address.email} is in use ({kinds}).",
            hint="Choose a confirmed replacement address to take over these uses.",
        )
    if replacement.id == address.id or not replacement.confirmed:
        raise ValidationError(
            "replacement", "must be another, confirmed address of the same organisation"
        )
    if replacement.org_id != address.org_id:
        raise ValidationError("replacement", "belongs to another organisation")
    return [dataclasses.replace(u, address_id=replacement.id) for u in mine]
