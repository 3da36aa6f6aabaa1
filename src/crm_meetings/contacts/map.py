"""The contact map, as Nexl's contacts work — derived, pure, from who met or mailed whom.

Input is a stream of :class:`Touch` values: a firm user met someone (a meeting they
scheduled, a session participant the sync brought back) or mailed them (an invitation).
From it:

- **my contacts**: people the given user touched; **firm-wide**: people anyone touched;
- **companies** by e-mail domain (free-mail domains excluded) merged with CRM accounts;
  **my companies** are those whose people I touched; each has a type (client, referral
  source, prospect) set by hand or from the CRM, and a relationship partner set by hand;
- signals: last meeting, meetings in the last 90 days, who in the firm knows them best;
- saved filters (:class:`CompanyFilter`) — e.g. firm-wide clients whose partner is me.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from crm_meetings.model import normalize_email, utc

__all__ = [
    "FREE_MAIL_DOMAINS",
    "Company",
    "CompanyFilter",
    "CompanyType",
    "Contact",
    "CrmAccount",
    "Scope",
    "Touch",
    "TouchKind",
    "build_companies",
    "build_contacts",
    "company_domain",
]

FREE_MAIL_DOMAINS: Final = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "yahoo.fr", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com",
        "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com",
        "zoho.com", "yandex.com", "yandex.ru", "orange.fr", "free.fr", "laposte.net",
        "qq.com", "163.com", "126.com", "naver.com", "fastmail.com", "hey.com",
    }
)  # fmt: skip
RECENT: Final = timedelta(days=90)


class TouchKind(StrEnum):
    MET = "met"  # scheduled with, or attended a session together
    MAILED = "mailed"  # sent an invitation or message to


class CompanyType(StrEnum):
    CLIENT = "client"
    REFERRAL_SOURCE = "referral_source"
    PROSPECT = "prospect"


class Scope(StrEnum):
    MINE = "mine"
    FIRM = "firm"


@dataclass(frozen=True, slots=True)
class Touch:
    user: str  # the firm user
    email: str  # the outside person
    name: str
    at: datetime
    kind: TouchKind

    def __post_init__(self) -> None:
        object.__setattr__(self, "user", normalize_email(self.user, "user"))
        object.__setattr__(self, "email", normalize_email(self.email))
        object.__setattr__(self, "at", utc(self.at, "at"))


@dataclass(frozen=True, slots=True)
class Contact:
    email: str
    name: str
    company_domain: str | None
    last_met: datetime | None
    meetings_90d: int
    known_best_by: str | None  # the firm user with the most touches
    users: frozenset[str]  # every firm user who touched them


@dataclass(frozen=True, slots=True)
class CrmAccount:
    """A CRM account/company: a name, its domain, and possibly its type."""

    domain: str
    name: str
    type: CompanyType | None = None


@dataclass(frozen=True, slots=True)
class Company:
    domain: str
    name: str
    type: CompanyType | None
    partner: str | None
    contacts: tuple[str, ...]
    users: frozenset[str]
    last_met: datetime | None
    meetings_90d: int
    known_best_by: str | None


def company_domain(email: str) -> str | None:
    """The company an address belongs to by domain; ``None`` for free-mail addresses."""
    domain = normalize_email(email).rsplit("@", 1)[1]
    return None if domain in FREE_MAIL_DOMAINS else domain


def _firm_member(touch: Touch, firm_domains: frozenset[str]) -> bool:
    return touch.email.rsplit("@", 1)[1] in firm_domains


def build_contacts(
    touches: Iterable[Touch],
    *,
    now: datetime,
    firm_domains: Iterable[str],
    user: str | None = None,
) -> list[Contact]:
    """Contacts seen by the firm (``user=None``) or by one user ("my contacts")."""
    firm = frozenset(d.lower() for d in firm_domains)
    mine = normalize_email(user, "user") if user else None
    per_person: dict[str, list[Touch]] = defaultdict(list)
    for touch in touches:
        if not _firm_member(touch, firm):
            per_person[touch.email].append(touch)
    contacts = []
    for email, seen in per_person.items():
        users = frozenset(t.user for t in seen)
        if mine is not None and mine not in users:
            continue
        contacts.append(_contact(email, seen, now))
    return sorted(contacts, key=lambda c: (c.name.lower(), c.email))


def _signals(seen: list[Touch], now: datetime) -> tuple[datetime | None, int, str | None]:
    met = [t for t in seen if t.kind is TouchKind.MET]
    last = max((t.at for t in met if t.at <= now), default=None)
    recent = sum(1 for t in met if now - RECENT <= t.at <= now)
    ranking = Counter(t.user for t in seen).most_common()
    best = min(ranking, key=lambda item: (-item[1], item[0]))[0] if ranking else None
    return last, recent, best


def _contact(email: str, seen: list[Touch], now: datetime) -> Contact:
    names = Counter(t.name for t in seen if t.name)
    last, recent, best = _signals(seen, now)
    return Contact(
        email=email,
        name=names.most_common(1)[0][0] if names else email,
        company_domain=company_domain(email),
        last_met=last,
        meetings_90d=recent,
        known_best_by=best,
        users=frozenset(t.user for t in seen),
    )


def build_companies(
    touches: Iterable[Touch],
    *,
    now: datetime,
    firm_domains: Iterable[str],
    accounts: Iterable[CrmAccount] = (),
    types: Mapping[str, CompanyType] | None = None,
    partners: Mapping[str, str] | None = None,
) -> list[Company]:
    """Companies by domain, merged with CRM accounts; hand-set types win over the CRM's."""
    firm = frozenset(d.lower() for d in firm_domains)
    by_domain: dict[str, list[Touch]] = defaultdict(list)
    for touch in touches:
        domain = company_domain(touch.email)
        if domain is not None and not _firm_member(touch, firm):
            by_domain[domain].append(touch)
    crm = {a.domain.lower(): a for a in accounts}
    companies = []
    for domain in sorted(set(by_domain) | set(crm)):
        seen = by_domain.get(domain, [])
        account = crm.get(domain)
        last, recent, best = _signals(seen, now)
        companies.append(
            Company(
                domain=domain,
                name=account.name if account else domain,
                type=(types or {}).get(domain) or (account.type if account else None),
                partner=(partners or {}).get(domain),
                contacts=tuple(sorted({t.email for t in seen})),
                users=frozenset(t.user for t in seen),
                last_met=last,
                meetings_90d=recent,
                known_best_by=best,
            )
        )
    return companies


@dataclass(frozen=True, slots=True)
class CompanyFilter:
    """A saved filter tab, e.g. ``CompanyFilter("My clients", Scope.FIRM, CLIENT, "me")``."""

    name: str
    scope: Scope = Scope.FIRM
    type: CompanyType | None = None
    partner: str | None = None  # an address, or "me"

    def apply(self, companies: Iterable[Company], *, user: str) -> list[Company]:
        me = normalize_email(user, "user")
        partner = me if self.partner == "me" else self.partner
        return [
            c
            for c in companies
            if (self.scope is Scope.FIRM or me in c.users)
            and (self.type is None or c.type is self.type)
            and (partner is None or c.partner == partner)
        ]
