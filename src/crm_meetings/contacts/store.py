"""The contact map from the store: touches derived from meetings and synced sessions.

Touches (see :mod:`.map`), per org:

- a **meeting** that is scheduled and has started: every firm attendee (the organizer,
  and invitees on a firm domain who did not decline) MET every other attendee who did
  not decline, at its start;
- any other meeting (future, cancelled, deleted) or a declined invitee: the organizer
  MAILED the invitee (the invitation went out), at the meeting's creation (else start);
- a **synced session** linked to a meeting: every firm participant and the meeting's
  organizer MET every other participant with an address, at the session's start —
  unless the meeting itself already counted that pair (one meeting, one touch).

The firm's domains default to the organizers' domains in the org. Company types and
relationship partners set by hand, CRM companies and saved filters are tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from crm_meetings.contacts.map import (
    Company,
    CompanyFilter,
    CompanyType,
    Contact,
    CrmAccount,
    Scope,
    Touch,
    TouchKind,
    build_companies,
    build_contacts,
)
from crm_meetings.contacts.tables import CompanyProfileRow, CrmCompanyRow, SavedFilterRow
from crm_meetings.errors import NotFoundError, ValidationError
from crm_meetings.model import MeetingStatus, ResponseStatus, normalize_email
from crm_meetings.routing.trust import normalize_domain
from crm_meetings.store.repositories import Repository
from crm_meetings.store.tables import MeetingRow, SessionRow

__all__ = ["ContactRepository"]

_Attendee = tuple[str, str]  # (email, name)


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[1]


def _met(at: datetime, people: list[_Attendee], firm: frozenset[str]) -> Iterator[Touch]:
    """Every firm person among ``people`` met every other one."""
    for user, _ in people:
        if _domain(user) in firm:
            for email, name in people:
                if email != user:
                    yield Touch(user, email, name, at, TouchKind.MET)


class ContactRepository(Repository):
    """Contacts and companies for one org, and what is set on them by hand."""

    # --- derived ---------------------------------------------------------------------

    def firm_domains(self, org_id: str) -> frozenset[str]:
        """The domains of the org's organizers: who counts as "the firm"."""
        query = sa.select(MeetingRow.organizer_email).where(MeetingRow.org_id == org_id)
        return frozenset(_domain(e) for e in self.session.scalars(query.distinct()))

    def touches(self, org_id: str, *, firm: Iterable[str] | None = None) -> list[Touch]:
        now = self.clock()
        domains = frozenset(firm) if firm is not None else self.firm_domains(org_id)
        found: list[Touch] = []
        meetings = (
            sa.select(MeetingRow)
            .options(orm.selectinload(MeetingRow.invitees))
            .where(MeetingRow.org_id == org_id)
            .order_by(MeetingRow.starts_at, MeetingRow.id)
        )
        organizers: dict[str, _Attendee] = {}
        seen: dict[str, set[tuple[str, str]]] = {}  # per meeting: who met whom already
        for row in self.session.scalars(meetings):
            organizer = (row.organizer_email, row.organizer_name)
            organizers[row.id] = organizer
            held = row.status == MeetingStatus.SCHEDULED.value and row.starts_at <= now
            declined = [i for i in row.invitees if i.response == ResponseStatus.DECLINED.value]
            if held:
                came = [(i.email, i.name) for i in row.invitees if i not in declined]
                met = list(_met(row.starts_at, [organizer, *came], domains))
                seen[row.id] = {(t.user, t.email) for t in met}
                found.extend(met)
            mailed = declined if held else row.invitees
            at = row.created_at or row.starts_at
            found.extend(
                Touch(row.organizer_email, i.email, i.name, at, TouchKind.MAILED)
                for i in mailed
                if i.email != row.organizer_email
            )
        sessions = (
            sa.select(SessionRow)
            .options(orm.selectinload(SessionRow.participants))
            .join(MeetingRow, MeetingRow.id == SessionRow.meeting_id)
            .where(MeetingRow.org_id == org_id)
        )
        for session in self.session.scalars(sessions):
            people = {p.email: p.name for p in session.participants if p.email}
            organizer = organizers[str(session.meeting_id)]
            people.setdefault(organizer[0], organizer[1])
            known = seen.get(str(session.meeting_id), set())
            attended = _met(session.starts_at, list(people.items()), domains)
            found.extend(t for t in attended if (t.user, t.email) not in known)
        return found

    def contacts(
        self, org_id: str, *, user: str | None = None, firm: Iterable[str] | None = None
    ) -> list[Contact]:
        """My contacts (``user``) or firm-wide ones (``user=None``)."""
        domains = frozenset(firm) if firm is not None else self.firm_domains(org_id)
        return build_contacts(
            self.touches(org_id, firm=domains), now=self.clock(), firm_domains=domains, user=user
        )

    def companies(
        self,
        org_id: str,
        *,
        user: str,
        scope: Scope = Scope.FIRM,
        type: CompanyType | None = None,
        saved: str | None = None,
        firm: Iterable[str] | None = None,
    ) -> list[Company]:
        """Companies for ``user``: firm-wide or mine, of one type, or a saved filter."""
        domains = frozenset(firm) if firm is not None else self.firm_domains(org_id)
        profiles = self.session.scalars(
            sa.select(CompanyProfileRow).where(CompanyProfileRow.org_id == org_id)
        ).all()
        everything = build_companies(
            self.touches(org_id, firm=domains),
            now=self.clock(),
            firm_domains=domains,
            accounts=self.crm_companies(org_id),
            types={p.domain: CompanyType(p.type) for p in profiles if p.type},
            partners={p.domain: p.partner for p in profiles if p.partner},
        )
        chosen = (
            self.get_filter(org_id, user, saved)
            if saved is not None
            else CompanyFilter("", scope, type)
        )
        return chosen.apply(everything, user=user)

    # --- set by hand -----------------------------------------------------------------

    def set_profile(
        self,
        org_id: str,
        domain: str,
        *,
        type: CompanyType | None = None,
        partner: str | None = None,
        clear_type: bool = False,
        clear_partner: bool = False,
    ) -> None:
        """Set (or clear) a company's type and relationship partner."""
        key = normalize_domain(domain)
        row = self.session.get(CompanyProfileRow, (org_id, key))
        if row is None:
            row = CompanyProfileRow(org_id=org_id, domain=key, updated_at=self.clock())
            self.session.add(row)
        if type is not None or clear_type:
            row.type = None if clear_type or type is None else CompanyType(type).value
        if partner is not None or clear_partner:
            row.partner = None if clear_partner or partner is None else normalize_email(partner)
        row.updated_at = self.clock()
        self.session.flush()

    def put_crm_company(self, org_id: str, account: CrmAccount) -> None:
        """Record (or update) an account/company as the CRM has it."""
        key = normalize_domain(account.domain)
        row = self.session.get(CrmCompanyRow, (org_id, key))
        if row is None:
            row = CrmCompanyRow(org_id=org_id, domain=key)
            self.session.add(row)
        row.name = account.name
        row.type = account.type.value if account.type else None
        row.updated_at = self.clock()
        self.session.flush()

    def crm_companies(self, org_id: str) -> list[CrmAccount]:
        rows = self.session.scalars(
            sa.select(CrmCompanyRow).where(CrmCompanyRow.org_id == org_id)
        ).all()
        return [CrmAccount(r.domain, r.name, CompanyType(r.type) if r.type else None) for r in rows]

    def save_filter(self, org_id: str, user: str, saved: CompanyFilter) -> CompanyFilter:
        """Create or replace the user's filter tab named ``saved.name``."""
        name = " ".join(saved.name.split())
        if not name:
            raise ValidationError("name", "a saved filter needs a name")
        owner = normalize_email(user, "user")
        row = self.session.get(SavedFilterRow, (org_id, owner, name))
        if row is None:
            row = SavedFilterRow(org_id=org_id, user_email=owner, name=name)
            self.session.add(row)
        row.scope = Scope(saved.scope).value
        row.type = saved.type.value if saved.type else None
        row.partner = (
            saved.partner
            if saved.partner in (None, "me")
            else normalize_email(str(saved.partner), "partner")
        )
        self.session.flush()
        return self.get_filter(org_id, owner, name)

    def filters(self, org_id: str, user: str) -> list[CompanyFilter]:
        query = sa.select(SavedFilterRow).where(
            SavedFilterRow.org_id == org_id,
            SavedFilterRow.user_email == normalize_email(user, "user"),
        )
        return [_filter(r) for r in self.session.scalars(query.order_by(SavedFilterRow.name))]

    def get_filter(self, org_id: str, user: str, name: str) -> CompanyFilter:
        row = self.session.get(SavedFilterRow, (org_id, normalize_email(user, "user"), name))
        if row is None:
            raise NotFoundError(
                f"{user} has no saved filter named {name!r}",
                hint="List them with `crm-meetings contacts filters`, or save one first.",
            )
        return _filter(row)

    def delete_filter(self, org_id: str, user: str, name: str) -> None:
        self.get_filter(org_id, user, name)
        self.session.execute(
            sa.delete(SavedFilterRow).where(
                SavedFilterRow.org_id == org_id,
                SavedFilterRow.user_email == normalize_email(user, "user"),
                SavedFilterRow.name == name,
            )
        )


def _filter(row: SavedFilterRow) -> CompanyFilter:
    return CompanyFilter(
        name=row.name,
        scope=Scope(row.scope),
        type=CompanyType(row.type) if row.type else None,
        partner=row.partner,
    )
