"""Organisation addresses through the store, on SQLite and PostgreSQL, with real SMTP."""

from __future__ import annotations

import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import TYPE_CHECKING, Any

import pytest

from crm_meetings.calendar.imip import Sender
from crm_meetings.calendar.outbox import Outbox, SmtpConfig, deliver_pending
from crm_meetings.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from crm_meetings.senders.addresses import CODE_VALIDITY, MAX_ADDRESSES, MAX_ATTEMPTS
from crm_meetings.senders.store import SenderRepository, code_in, confirm_address, sender_for
from crm_meetings.store import Store, upgrade

if TYPE_CHECKING:
    from conftest import SmtpSink

ORG = "acme"
SYSTEM = Sender("no-reply@acme.example", "Acme Meetings")


def codes(*values: str) -> Any:
    it = iter(values)
    return lambda: next(it)


def add(store: Store, email: str, code: str = "ABCD2345", **kw: Any) -> str:
    with store.transaction() as uow:
        address = uow.repository(SenderRepository).add(
            ORG, email, kw.pop("name", "Sales Team"), kw.pop("profiles", ["rep", "admin"]),
            mail_from=SYSTEM, code_factory=lambda: code, **kw,
        )  # fmt: skip
    return address.id


def confirmed(store: Store, email: str, code: str = "ABCD2345") -> str:
    address_id = add(store, email, code)
    confirm_address(store, ORG, address_id, code)
    return address_id


def test_the_eleventh_address_is_refused_by_the_store(store: Store) -> None:
    for i in range(MAX_ADDRESSES):
        add(store, f"a{i}@acme.example")
    with pytest.raises(ConflictError, match="already has 10"):
        add(store, "eleventh@acme.example")
    with store.transaction() as uow:
        repo = uow.repository(SenderRepository)
        assert len(repo.addresses(ORG)) == MAX_ADDRESSES
        repo.delete(ORG, "a3@acme.example")
    add(store, "eleventh@acme.example")  # its slot is free again


@pytest.mark.postgres
def test_concurrent_adds_never_pass_ten(postgres_url: str) -> None:
    upgrade(postgres_url)
    with Store(postgres_url) as store:
        start = threading.Barrier(15)
        outcomes: list[str] = []

        def adder(n: int) -> None:
            start.wait()
            try:
                add(store, f"a{n}@acme.example")
                outcomes.append("added")
            except ConflictError:
                outcomes.append("refused")
            except BaseException as error:  # reported by the assertion below
                outcomes.append(repr(error))

        workers = [threading.Thread(target=adder, args=(n,)) for n in range(15)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert sorted(outcomes) == ["added"] * 10 + ["refused"] * 5
        with store.transaction() as uow:
            assert len(uow.repository(SenderRepository).addresses(ORG)) == MAX_ADDRESSES


def test_adding_queues_the_code_and_only_its_hash_is_kept(store: Store) -> None:
    address_id = add(store, "sales@acme.example", "QWER2345")
    with store.transaction() as uow:
        (entry,) = Outbox.list(uow)
        address = uow.repository(SenderRepository).get(ORG, address_id)
    assert entry.recipient == "sales@acme.example"
    assert entry.subject == "Confirm sales@acme.example as an organisation address"
    assert address.code_hash is not None
    assert "QWER2345" not in address.code_hash


def test_code_expires_after_fifteen_days(store: Store, clock: Any) -> None:
    address_id = add(store, "sales@acme.example", "ABCD2345")
    clock.advance(seconds=CODE_VALIDITY.total_seconds())
    with pytest.raises(PermissionDeniedError, match="expired"):
        confirm_address(store, ORG, address_id, "ABCD2345")
    with store.transaction() as uow:
        uow.repository(SenderRepository).resend(ORG, address_id, mail_from=SYSTEM,
                                                code_factory=codes("NEWC2345"))  # fmt: skip
        assert len(Outbox.list(uow)) == 2  # a new mail, not the old one again
    with pytest.raises(PermissionDeniedError, match="not right"):
        confirm_address(store, ORG, address_id, "ABCD2345")  # resend voided it
    assert confirm_address(store, ORG, address_id, "newc-2345").confirmed
    with pytest.raises(PermissionDeniedError, match="already used"):
        confirm_address(store, ORG, address_id, "NEWC2345")


def test_wrong_tries_are_counted_across_transactions(store: Store) -> None:
    address_id = add(store, "sales@acme.example", "ABCD2345")
    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(PermissionDeniedError, match="not right"):
            confirm_address(store, ORG, address_id, "WRONG234")
    with pytest.raises(PermissionDeniedError, match="Too many"):
        confirm_address(store, ORG, address_id, "ABCD2345")
    with store.transaction() as uow:
        assert uow.repository(SenderRepository).get(ORG, address_id).attempts == MAX_ATTEMPTS


def test_the_address_itself_is_immutable(store: Store) -> None:
    address_id = add(store, "sales@acme.example")
    with store.transaction() as uow:
        repo = uow.repository(SenderRepository)
        with pytest.raises(ValidationError, match="cannot be changed"):
            repo.edit(ORG, address_id, email="other@acme.example")
        edited = repo.edit(ORG, address_id, display_name="Sales", profiles=["admin"])
    with store.transaction() as uow:
        assert uow.repository(SenderRepository).get(ORG, "sales@acme.example") == edited
    assert edited.email == "sales@acme.example"
    assert edited.profiles == {"admin"}


def test_delete_in_use_needs_a_confirmed_replacement_that_takes_every_use(store: Store) -> None:
    old = confirmed(store, "old@acme.example")
    new = confirmed(store, "new@acme.example")
    pending = add(store, "pending@acme.example")
    with store.transaction() as uow:
        repo = uow.repository(SenderRepository)
        repo.set_use(ORG, "invitations", "default", old)
        repo.set_use(ORG, "rotation", "rot_1", old)
        repo.set_use(ORG, "approvals", "default", old)
        with pytest.raises(PermissionDeniedError, match="not confirmed"):
            repo.set_use(ORG, "rotation", "rot_2", pending)
    with store.transaction() as uow, pytest.raises(ConflictError, match="in use"):
        uow.repository(SenderRepository).delete(ORG, old)
    with store.transaction() as uow, pytest.raises(ValidationError, match="confirmed"):
        uow.repository(SenderRepository).delete(ORG, old, replacement=pending)
    with store.transaction() as uow:
        moved = uow.repository(SenderRepository).delete(ORG, old, replacement=new)
    assert len(moved) == 3
    with store.transaction() as uow:
        repo = uow.repository(SenderRepository)
        assert {u.address_id for u in repo.uses(ORG)} == {new}
        with pytest.raises(NotFoundError):
            repo.get(ORG, old)


def test_sender_for_enforces_confirmation_and_profiles(store: Store) -> None:
    address_id = add(store, "sales@acme.example", profiles=["admin"], reply_to="desk@acme.example")
    with store.transaction() as uow:
        with pytest.raises(NotFoundError, match="no organisation address"):
            sender_for(uow, ORG, "admin")
        with pytest.raises(PermissionDeniedError, match="not confirmed"):
            sender_for(uow, ORG, "admin", address_id)
    confirm_address(store, ORG, address_id, "ABCD2345")
    with store.transaction() as uow:
        uow.repository(SenderRepository).set_use(ORG, "invitations", "default", address_id)
        with pytest.raises(PermissionDeniedError, match="'rep' profile"):
            sender_for(uow, ORG, "rep")
        chosen = sender_for(uow, ORG, "admin")
    assert chosen == Sender("sales@acme.example", "Sales Team", "desk@acme.example")


# --- end to end through a real SMTP server ------------------------------------------------


def test_confirmation_end_to_end_through_smtp(
    store: Store, clock: Any, smtp_sink: tuple[SmtpConfig, SmtpSink]
) -> None:
    config, sink = smtp_sink
    with store.transaction() as uow:
        address = uow.repository(SenderRepository).add(
            ORG, "sales@acme.example", "Sales Team", ["rep"], mail_from=SYSTEM
        )
    assert deliver_pending(store, config, clock.now).sent
    (raw,) = sink.received
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "sales@acme.example"
    assert message["From"] == "Acme Meetings <no-reply@acme.example>"
    code = code_in(raw)
    assert code is not None
    assert confirm_address(store, ORG, address.id, code).confirmed
    with store.transaction() as uow:
        assert uow.repository(SenderRepository).get(ORG, address.id).confirmed


def test_a_rotations_default_sender_is_checked_against_the_profile_too(store: Store) -> None:
    address_id = confirmed(store, "round-robin@acme.example")
    with store.transaction() as uow:
        repo = uow.repository(SenderRepository)
        repo.edit(ORG, address_id, profiles=["manager"])
        repo.set_use(ORG, "rotation", "rot_1", address_id)
        use = ("rotation", "rot_1")
        assert sender_for(uow, ORG, "manager", use=use).address == "round-robin@acme.example"
        with pytest.raises(PermissionDeniedError, match="'rep' profile"):
            sender_for(uow, ORG, "rep", use=use)
        with pytest.raises(NotFoundError):
            sender_for(uow, ORG, "manager", use=("rotation", "rot_2"))
