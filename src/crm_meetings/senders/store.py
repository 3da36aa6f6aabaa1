"""Organisation addresses in the store: the rules of :mod:`.addresses`, made durable.

``uow.repository(SenderRepository)`` works inside the caller's transaction:

- :meth:`~SenderRepository.add` checks the rules, takes one of the org's 10 slots (the
  database refuses an eleventh, even under concurrent adds) and queues the confirmation
  code to the address through the outbox, in the same transaction.
- :meth:`~SenderRepository.try_confirm` persists a counted wrong try; use
  :func:`confirm_address` to commit that count *before* the error is raised.
- :meth:`~SenderRepository.delete` moves every use to the replacement and deletes the
  address in one transaction.
- :func:`sender_for` is what every sending path calls: the confirmed address the user's
  profile may send from, as an :class:`~crm_meetings.calendar.imip.Sender`.
"""

from __future__ import annotations

import quopri
import re
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox import Outbox
from crm_meetings.errors import ConflictError, NotFoundError, PermissionDeniedError
from crm_meetings.model import normalize_email
from crm_meetings.senders import addresses as rules
from crm_meetings.senders.addresses import AddressStatus, OrgAddress, Use
from crm_meetings.senders.mail import notice
from crm_meetings.senders.tables import AddressUseRow, OrgAddressRow
from crm_meetings.store.repositories import Repository
from crm_meetings.store.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from crm_meetings.store import Store

__all__ = [
    "DEFAULT_USE",
    "SenderRepository",
    "code_in",
    "confirm_address",
    "confirmation_mail_body",
    "sender_for",
]

DEFAULT_USE: Final = ("invitations", "default")  # the org's default invitation sender


def _new_id() -> str:
    return f"addr_{secrets.token_hex(8)}"


def _value(row: OrgAddressRow) -> OrgAddress:
    return OrgAddress(
        id=row.id,
        org_id=row.org_id,
        email=row.email,
        display_name=row.display_name,
        profiles=frozenset(str(p) for p in row.profiles),
        status=AddressStatus(row.status),
        code_hash=row.code_hash,
        code_sent_at=row.code_sent_at,
        attempts=row.attempts,
        reply_to=row.reply_to,
    )


def _write(row: OrgAddressRow, address: OrgAddress) -> None:
    row.display_name = address.display_name
    row.profiles = sorted(address.profiles)
    row.reply_to = address.reply_to
    row.status = address.status.value
    row.code_hash = address.code_hash
    row.code_sent_at = address.code_sent_at
    row.attempts = address.attempts


def confirmation_mail_body(address: OrgAddress, code: str) -> str:
    expires = address.expires_at()
    until = f" (until {expires:%Y-%m-%d %H:%M} UTC)" if expires else ""
    return (
        f"Someone added {address.email} as an organisation address "
        f"({address.display_name!r}) in crm-meetings.\n\n"
        f"Confirmation code: {code}\n\n"
        f"The code is valid for 15 days{until} and works once. If you did not expect "
        "this, ignore this e-mail: nothing is sent from this address until it is confirmed.\n"
    )


_CODE_LINE: Final = re.compile(rb"Confirmation code: ([A-Z0-9]{8})")


def code_in(raw: bytes) -> str | None:
    """The code in a confirmation e-mail as delivered (for the demo and tests)."""
    found = _CODE_LINE.search(quopri.decodestring(raw))
    return found.group(1).decode("ascii") if found else None


class SenderRepository(Repository):
    """Organisation addresses and their uses, per org."""

    # --- reading ---------------------------------------------------------------------

    def addresses(self, org_id: str) -> list[OrgAddress]:
        query = sa.select(OrgAddressRow).where(OrgAddressRow.org_id == org_id)
        return [_value(r) for r in self.session.scalars(query.order_by(OrgAddressRow.slot))]

    def get(self, org_id: str, ref: str) -> OrgAddress:
        """An address by id or by e-mail address."""
        return _value(self._row(org_id, ref))

    def uses(self, org_id: str, address_id: str | None = None) -> list[Use]:
        query = sa.select(AddressUseRow).where(AddressUseRow.org_id == org_id)
        if address_id is not None:
            query = query.where(AddressUseRow.address_id == address_id)
        rows = self.session.scalars(query.order_by(AddressUseRow.kind, AddressUseRow.ref))
        return [Use(r.kind, r.ref, r.address_id) for r in rows]

    def _row(self, org_id: str, ref: str, *, lock: bool = False) -> OrgAddressRow:
        query = sa.select(OrgAddressRow).where(OrgAddressRow.org_id == org_id)
        if "@" in ref:
            query = query.where(OrgAddressRow.email == normalize_email(ref))
        else:
            query = query.where(OrgAddressRow.id == ref)
        if lock:  # PostgreSQL: concurrent tries queue here; SQLite already wrote-locked
            query = query.with_for_update()
        row = self.session.scalars(query.execution_options(populate_existing=True)).first()
        if row is None:
            raise NotFoundError(
                f"No organisation address {ref} in org {org_id}",
                hint="List them with `crm-meetings senders list`.",
            )
        return row

    # --- adding and confirming -------------------------------------------------------

    def add(
        self,
        org_id: str,
        email: str,
        display_name: str,
        profiles: Iterable[str],
        *,
        mail_from: Sender,
        reply_to: str | None = None,
        code_factory: Callable[[], str] = rules.new_code,
        id_factory: Callable[[], str] = _new_id,
    ) -> OrgAddress:
        """Add a pending address and queue its confirmation code (same transaction)."""
        wanted = list(profiles)
        for _ in range(rules.MAX_ADDRESSES + 1):  # a lost race for a slot: look again
            existing = self.addresses(org_id)
            address, code = rules.add_address(
                existing,
                id=id_factory(),
                org_id=org_id,
                email=email,
                display_name=display_name,
                profiles=wanted,
                now=self.clock(),
                reply_to=reply_to,
                code_factory=code_factory,
            )
            free = set(range(1, rules.MAX_ADDRESSES + 1)) - set(self._slots(org_id))
            if not free:  # filled since we listed them: the rules will say so
                continue
            slot = min(free)
            row = OrgAddressRow(
                id=address.id, org_id=org_id, slot=slot, email=address.email,
                created_at=self.clock(),
            )  # fmt: skip
            _write(row, address)
            try:
                with self.session.begin_nested():
                    self.session.add(row)
            except exc.IntegrityError:
                continue
            self._send_code(address, code, mail_from)
            return address
        raise ConflictError(
            f"Could not add {email}: other additions kept taking the free slots.",
            hint="Try again.",
        )

    def _slots(self, org_id: str) -> list[int]:
        query = sa.select(OrgAddressRow.slot).where(OrgAddressRow.org_id == org_id)
        return list(self.session.scalars(query))

    def resend(
        self,
        org_id: str,
        ref: str,
        *,
        mail_from: Sender,
        code_factory: Callable[[], str] = rules.new_code,
    ) -> OrgAddress:
        """A new code (the old one stops working), queued to the address."""
        row = self._row(org_id, ref, lock=True)
        address, code = rules.resend(_value(row), now=self.clock(), code_factory=code_factory)
        _write(row, address)
        self._send_code(address, code, mail_from)
        return address

    def _send_code(self, address: OrgAddress, code: str, mail_from: Sender) -> None:
        mail = notice(
            sender=mail_from,
            recipient=address.email,
            subject=f"Confirm {address.email} as an organisation address",
            body=confirmation_mail_body(address, code),
            topic=f"sender-confirmation:{address.id}",
            nonce=address.code_hash or "",
            now=self.clock(),
        )
        Outbox.enqueue(UnitOfWork(self.session, self.clock), mail)

    def try_confirm(
        self, org_id: str, ref: str, code: str
    ) -> tuple[OrgAddress, PermissionDeniedError | None]:
        """Check ``code``; the result (a counted wrong try too) is written in any case."""
        row = self._row(org_id, ref, lock=True)
        address, error = rules.try_confirm(_value(row), code, now=self.clock())
        _write(row, address)
        self.session.flush()
        return address, error

    # --- editing, uses, deleting -----------------------------------------------------

    def edit(self, org_id: str, ref: str, **changes: Any) -> OrgAddress:
        """Display name, reply-to and profiles; the address itself stays (ValidationError)."""
        row = self._row(org_id, ref, lock=True)
        address = rules.edit(_value(row), **changes)
        _write(row, address)
        return address

    def set_use(self, org_id: str, kind: str, ref: str, address: str) -> Use:
        """Make ``address`` (id or e-mail, confirmed) the sender for ``(kind, ref)``."""
        row = self._row(org_id, address)
        if row.status != AddressStatus.CONFIRMED.value:
            raise PermissionDeniedError(
                f"{row.email} is not confirmed yet.",
                hint="Enter the confirmation code sent to it, or resend the code.",
            )
        use = self.session.get(AddressUseRow, (org_id, kind, ref))
        if use is None:
            self.session.add(AddressUseRow(org_id=org_id, kind=kind, ref=ref, address_id=row.id))
        else:
            use.address_id = row.id
        self.session.flush()
        return Use(kind, ref, row.id)

    def clear_use(self, org_id: str, kind: str, ref: str) -> None:
        self.session.execute(
            sa.delete(AddressUseRow).where(
                AddressUseRow.org_id == org_id, AddressUseRow.kind == kind, AddressUseRow.ref == ref
            )
        )

    def delete(self, org_id: str, ref: str, *, replacement: str | None = None) -> list[Use]:
        """Delete an address; its uses move to ``replacement`` first (one transaction)."""
        row = self._row(org_id, ref, lock=True)
        substitute = _value(self._row(org_id, replacement)) if replacement else None
        moves = rules.plan_delete(_value(row), self.uses(org_id, row.id), substitute)
        for move in moves:
            use = self.session.get(AddressUseRow, (org_id, move.kind, move.ref))
            if use is not None:
                use.address_id = move.address_id
        self.session.flush()
        self.session.delete(row)
        self.session.flush()
        return moves

    def sender_for(
        self,
        org_id: str,
        profile: str,
        address_id: str | None = None,
        *,
        use: tuple[str, str] = DEFAULT_USE,
    ) -> Sender:
        """The sender a user with ``profile`` may use: ``address_id``, else the org's
        address for ``use``; PermissionDeniedError if unconfirmed or not allowed."""
        if address_id is None:
            found = self.session.get(AddressUseRow, (org_id, *use))
            if found is None:
                raise NotFoundError(
                    f"Org {org_id} has no organisation address for {use[0]} {use[1]}",
                    hint="Choose one with `crm-meetings senders use`, or pick an address.",
                )
            address_id = found.address_id
        address = _value(self._row(org_id, address_id))
        rules.require_sender(address, profile)
        return Sender(address.email, address.display_name, address.reply_to)


def sender_for(
    uow: UnitOfWork,
    org_id: str,
    profile: str,
    address_id: str | None = None,
    *,
    use: tuple[str, str] = DEFAULT_USE,
) -> Sender:
    """For the actions layer: the checked sender (see :meth:`SenderRepository.sender_for`)."""
    return uow.repository(SenderRepository).sender_for(org_id, profile, address_id, use=use)


def confirm_address(store: Store, org_id: str, ref: str, code: str) -> OrgAddress:
    """Confirm with ``code``; a wrong try is committed before its error is raised."""
    with store.transaction() as uow:
        address, error = uow.repository(SenderRepository).try_confirm(org_id, ref, code)
    if error is not None:
        raise error
    return address
