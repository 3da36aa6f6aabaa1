"""Trust circle modes, the in-copy rule, look-alike domains and approval links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_meetings.errors import PermissionDeniedError, ValidationError
from crm_meetings.routing.trust import (
    ApprovalAction,
    Decision,
    TrustCircle,
    TrustMode,
    decide,
    normalize_domain,
    sign_approval,
    verify_approval,
)

OWNER = "julie@france.com"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET = b"approval-secret-for-tests"


def test_signup_trusts_the_owners_domain_only() -> None:
    circle = TrustCircle.at_signup("Julie@France.COM")
    assert circle.domains == frozenset({"france.com"})
    assert decide(circle, "colleague@france.com") is Decision.ACCEPT
    assert decide(circle, "buyer@client.example") is Decision.NEEDS_APPROVAL


@pytest.mark.parametrize(
    "sender",
    ["a@evil-france.com", "a@france.com.evil.net", "a@mail.france.com", "a@fr.com"],
)
def test_look_alike_and_sub_domains_are_not_trusted(sender: str) -> None:
    assert decide(TrustCircle.at_signup(OWNER), sender) is Decision.NEEDS_APPROVAL


def test_subdomains_only_through_an_explicit_wildcard() -> None:
    circle = TrustCircle(owner=OWNER, domains=frozenset({"*.france.com"}))
    assert decide(circle, "a@mail.france.com") is Decision.ACCEPT
    assert decide(circle, "a@evil-france.com") is Decision.NEEDS_APPROVAL


def test_listed_addresses_are_trusted_case_insensitively() -> None:
    circle = TrustCircle(owner=OWNER, addresses=frozenset({"Partner@Agency.example"}))
    assert decide(circle, "partner@agency.example") is Decision.ACCEPT
    assert decide(circle, "other@agency.example") is Decision.NEEDS_APPROVAL


def test_idna_domains_match_in_either_form() -> None:
    circle = TrustCircle(owner=OWNER, domains=frozenset({"bücher.example"}))
    assert normalize_domain("BÜCHER.example") == "xn--bcher-kva.example"
    assert decide(circle, "a@xn--bcher-kva.example") is Decision.ACCEPT
    assert decide(circle, "a@bücher.example") is Decision.ACCEPT


def test_trust_everyone_and_restricted_empty() -> None:
    everyone = TrustCircle(owner=OWNER, mode=TrustMode.EVERYONE)
    assert decide(everyone, "anyone@anywhere.example") is Decision.ACCEPT
    empty = TrustCircle(owner=OWNER)
    assert decide(empty, "colleague@france.com") is Decision.NEEDS_APPROVAL
    assert decide(empty, OWNER) is Decision.ACCEPT


def test_email_requests_need_the_owner_in_copy() -> None:
    circle = TrustCircle(owner=OWNER, mode=TrustMode.EVERYONE)
    assert decide(circle, "a@x.example", cc=[]) is Decision.REFUSE_NOT_IN_COPY
    assert decide(circle, "a@x.example", cc=["JULIE@france.com"]) is Decision.ACCEPT


def test_display_names_never_count_as_identity() -> None:
    circle = TrustCircle.at_signup(OWNER)
    with pytest.raises(ValidationError):
        decide(circle, "julie@france.com <attacker@evil.example>")


def test_approval_links_round_trip() -> None:
    token = sign_approval(SECRET, "req-1", ApprovalAction.APPROVE, now=NOW)
    assert verify_approval(SECRET, token, now=NOW + timedelta(days=1)) == (
        "req-1",
        ApprovalAction.APPROVE,
    )


def test_expired_links_are_refused() -> None:
    token = sign_approval(
        SECRET, "req-1", ApprovalAction.DECLINE, now=NOW, valid_for=timedelta(hours=1)
    )
    with pytest.raises(PermissionDeniedError, match="expired"):
        verify_approval(SECRET, token, now=NOW + timedelta(hours=1))


@pytest.mark.parametrize("mutate", ["body", "mac", "secret", "garbage"])
def test_tampered_links_are_refused(mutate: str) -> None:
    token = sign_approval(SECRET, "req-1", ApprovalAction.APPROVE, now=NOW)
    body, mac = token.split(".")
    forged = {
        "body": sign_approval(SECRET, "req-2", ApprovalAction.APPROVE, now=NOW).split(".")[0]
        + "."
        + mac,
        "mac": body + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"),
        "secret": sign_approval(b"other", "req-1", ApprovalAction.APPROVE, now=NOW),
        "garbage": "not a token at all",
    }[mutate]
    with pytest.raises(PermissionDeniedError, match="not genuine"):
        verify_approval(SECRET, forged, now=NOW)
