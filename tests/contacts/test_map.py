"""The contact map derived from meetings, sessions and invitations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_meetings.contacts.map import (
    CompanyFilter,
    CompanyType,
    CrmAccount,
    Scope,
    Touch,
    TouchKind,
    build_companies,
    build_contacts,
    company_domain,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FIRM = ["firm.example"]
ANA, BEN = "ana@firm.example", "ben@firm.example"


def touches() -> list[Touch]:
    return [
        Touch(ANA, "cto@acme.example", "Carla CTO", NOW - timedelta(days=3), TouchKind.MET),
        Touch(ANA, "cto@acme.example", "Carla CTO", NOW - timedelta(days=200), TouchKind.MET),
        Touch(BEN, "cto@acme.example", "Carla", NOW - timedelta(days=10), TouchKind.MAILED),
        Touch(BEN, "buyer@globex.example", "Gus Buyer", NOW - timedelta(days=40), TouchKind.MET),
        Touch(BEN, "someone@gmail.com", "Private Person", NOW - timedelta(days=1), TouchKind.MET),
        Touch(ANA, BEN, "Ben Colleague", NOW - timedelta(days=1), TouchKind.MET),
    ]


def test_free_mail_is_not_a_company() -> None:
    assert company_domain("x@gmail.com") is None
    assert company_domain("x@Acme.example") == "acme.example"


def test_my_contacts_versus_firm_wide() -> None:
    firm = build_contacts(touches(), now=NOW, firm_domains=FIRM)
    mine = build_contacts(touches(), now=NOW, firm_domains=FIRM, user=ANA)
    assert {c.email for c in firm} == {
        "cto@acme.example",
        "buyer@globex.example",
        "someone@gmail.com",
    }
    assert [c.email for c in mine] == ["cto@acme.example"]


def test_contact_signals() -> None:
    carla = next(
        c for c in build_contacts(touches(), now=NOW, firm_domains=FIRM) if "cto" in c.email
    )
    assert carla.name == "Carla CTO"
    assert carla.last_met == NOW - timedelta(days=3)
    assert carla.meetings_90d == 1  # the 200-day-old meeting is outside the window
    assert carla.known_best_by == ANA  # two touches against one
    assert carla.users == frozenset({ANA, BEN})


def test_companies_by_domain_merged_with_crm_accounts_and_hand_set_types() -> None:
    companies = build_companies(
        touches(),
        now=NOW,
        firm_domains=FIRM,
        accounts=[
            CrmAccount("acme.example", "Acme Inc.", CompanyType.PROSPECT),
            CrmAccount("initech.example", "Initech", CompanyType.REFERRAL_SOURCE),
        ],
        types={"acme.example": CompanyType.CLIENT},
        partners={"acme.example": ANA},
    )
    by_domain = {c.domain: c for c in companies}
    assert set(by_domain) == {"acme.example", "globex.example", "initech.example"}
    acme = by_domain["acme.example"]
    assert (acme.name, acme.type, acme.partner) == ("Acme Inc.", CompanyType.CLIENT, ANA)
    assert acme.contacts == ("cto@acme.example",)
    assert by_domain["initech.example"].type is CompanyType.REFERRAL_SOURCE
    assert by_domain["initech.example"].users == frozenset()


def test_saved_filters() -> None:
    companies = build_companies(
        touches(),
        now=NOW,
        firm_domains=FIRM,
        types={"acme.example": CompanyType.CLIENT, "globex.example": CompanyType.CLIENT},
        partners={"acme.example": ANA, "globex.example": BEN},
    )
    mine_as_partner = CompanyFilter("Partner is me", Scope.FIRM, CompanyType.CLIENT, "me")
    assert [c.domain for c in mine_as_partner.apply(companies, user=ANA)] == ["acme.example"]
    my_companies = CompanyFilter("My companies", Scope.MINE)
    assert [c.domain for c in my_companies.apply(companies, user=BEN)] == [
        "acme.example",
        "globex.example",
    ]
    prospects = CompanyFilter("Prospects", type=CompanyType.PROSPECT)
    assert prospects.apply(companies, user=ANA) == []
