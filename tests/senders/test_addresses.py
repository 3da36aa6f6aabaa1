"""Every rule of organisation sender addresses, with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_meetings.errors import ConflictError, PermissionDeniedError, ValidationError
from crm_meetings.senders.addresses import (
    CODE_VALIDITY,
    MAX_ATTEMPTS,
    OrgAddress,
    Use,
    add_address,
    confirm,
    edit,
    new_code,
    plan_delete,
    require_sender,
    resend,
    try_confirm,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def codes(*values: str):  # type: ignore[no-untyped-def]
    it = iter(values)
    return lambda: next(it)


def added(email: str = "sales@firm.example", code: str = "ABCD2345", **kw: object) -> OrgAddress:
    address, issued = add_address(
        kw.pop("existing", []),  # type: ignore[arg-type]
        id=kw.pop("id", "a1"),  # type: ignore[arg-type]
        org_id="org",
        email=email,
        display_name="Sales Team",
        profiles={"rep", "admin"},
        now=NOW,
        code_factory=codes(code),
    )
    assert issued == code
    return address


def test_codes_are_eight_unambiguous_characters() -> None:
    code = new_code()
    assert len(code) == 8
    assert not set(code) & set("01IO")


def test_the_eleventh_address_is_refused() -> None:
    existing = [added(f"a{i}@firm.example", id=f"a{i}") for i in range(10)]
    with pytest.raises(ConflictError, match="already has 10"):
        added("eleventh@firm.example", existing=existing, id="a10")


def test_the_same_address_cannot_be_added_twice() -> None:
    with pytest.raises(ConflictError, match="already an organisation address"):
        added("Sales@Firm.example", existing=[added()], id="a2")


def test_only_the_hash_of_the_code_is_kept() -> None:
    address = added(code="ABCD2345")
    assert address.code_hash
    assert "ABCD2345" not in address.code_hash
    assert not address.confirmed


def test_confirm_accepts_the_code_once() -> None:
    address = confirm(added(), "abcd-2345", now=NOW + timedelta(days=1))
    assert address.confirmed
    with pytest.raises(PermissionDeniedError, match="already used"):
        confirm(address, "ABCD2345", now=NOW + timedelta(days=1))


def test_codes_expire_after_fifteen_days() -> None:
    address = added()
    assert confirm(address, "ABCD2345", now=NOW + CODE_VALIDITY - timedelta(seconds=1)).confirmed
    with pytest.raises(PermissionDeniedError, match="expired"):
        confirm(address, "ABCD2345", now=NOW + CODE_VALIDITY)


def test_resend_voids_the_old_code_and_restarts_the_clock() -> None:
    address = added(code="OLDC2345")
    later = NOW + timedelta(days=14)
    renewed, code = resend(address, now=later, code_factory=codes("NEWC2345"))
    assert code == "NEWC2345"
    with pytest.raises(PermissionDeniedError, match="not right"):
        confirm(renewed, "OLDC2345", now=later)
    assert confirm(renewed, "NEWC2345", now=later + timedelta(days=14)).confirmed


def test_wrong_codes_are_counted_and_bounded() -> None:
    address = added()
    for n in range(MAX_ATTEMPTS):
        address, error = try_confirm(address, "WRONG000", now=NOW)
        assert error is not None
        assert address.attempts == n + 1
    address, error = try_confirm(address, "ABCD2345", now=NOW)
    assert error is not None
    assert "Too many" in error.message
    renewed, _ = resend(address, now=NOW, code_factory=codes("FRESH234"))
    assert renewed.attempts == 0
    assert confirm(renewed, "FRESH234", now=NOW).confirmed


def test_the_address_itself_is_immutable() -> None:
    address = added()
    with pytest.raises(ValidationError) as info:
        edit(address, email="other@firm.example")
    assert info.value.field == "email"
    renamed = edit(address, display_name="Firm Sales", profiles=["admin"], email=address.email)
    assert (renamed.email, renamed.display_name, renamed.profiles) == (
        "sales@firm.example",
        "Firm Sales",
        frozenset({"admin"}),
    )
    with pytest.raises(ValidationError):
        edit(address, status="confirmed")


def test_profiles_are_enforced_and_confirmation_required() -> None:
    address = added()
    with pytest.raises(PermissionDeniedError, match="not confirmed"):
        require_sender(address, "rep")
    address = confirm(address, "ABCD2345", now=NOW)
    require_sender(address, "rep")
    with pytest.raises(PermissionDeniedError, match="'intern' profile"):
        require_sender(address, "intern")


def test_deleting_an_address_in_use_needs_a_confirmed_replacement() -> None:
    old = confirm(added(), "ABCD2345", now=NOW)
    new = added("team@firm.example", id="a2", existing=[old], code="TEAM2345")
    uses = [
        Use("invitations", "default", old.id),
        Use("rotation", "r1", old.id),
        Use("x", "y", "z"),
    ]
    with pytest.raises(ConflictError, match="in use"):
        plan_delete(old, uses, None)
    with pytest.raises(ValidationError, match="confirmed"):
        plan_delete(old, uses, new)
    new = confirm(new, "TEAM2345", now=NOW)
    moved = plan_delete(old, uses, new)
    assert moved == [Use("invitations", "default", "a2"), Use("rotation", "r1", "a2")]
    assert plan_delete(new, [], None) == []
