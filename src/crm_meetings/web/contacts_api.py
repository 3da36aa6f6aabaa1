"""``/api/v1/contacts`` and ``/api/v1/companies``: the contact map, in the caller's org.

``scope=mine`` is the people (companies) the caller met or mailed; ``scope=firm`` is
everyone anyone in the org did. Companies take a ``type`` tab and the caller's saved
``filter`` by name (a saved filter replaces ``scope`` and ``type``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from crm_meetings.contacts.map import Company, CompanyType, Contact, Scope
from crm_meetings.contacts.store import ContactRepository
from crm_meetings.web.deps import Caller, State

__all__ = ["CompanyOut", "ContactOut", "router"]

router = APIRouter(prefix="/api/v1", tags=["contacts"])


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContactOut(_Out):
    email: str
    name: str
    company: str | None
    last_met: datetime | None
    meetings_90d: int
    known_best_by: str | None
    users: list[str]

    @classmethod
    def of(cls, c: Contact) -> ContactOut:
        return cls(
            email=c.email, name=c.name, company=c.company_domain, last_met=c.last_met,
            meetings_90d=c.meetings_90d, known_best_by=c.known_best_by, users=sorted(c.users),
        )  # fmt: skip


class CompanyOut(_Out):
    domain: str
    name: str
    type: str | None
    partner: str | None
    contacts: list[str]
    last_met: datetime | None
    meetings_90d: int
    known_best_by: str | None

    @classmethod
    def of(cls, c: Company) -> CompanyOut:
        return cls(
            domain=c.domain, name=c.name, type=c.type.value if c.type else None,
            partner=c.partner, contacts=list(c.contacts), last_met=c.last_met,
            meetings_90d=c.meetings_90d, known_best_by=c.known_best_by,
        )  # fmt: skip


ScopeQuery = Annotated[Scope, Query(description="mine: people you met or mailed; firm: all.")]


@router.get("/contacts", response_model=list[ContactOut])
def contacts(caller: Caller, state: State, scope: ScopeQuery = Scope.MINE) -> list[ContactOut]:
    """Your contacts (``scope=mine``) or the firm's (``scope=firm``)."""
    user = caller.actor().email if scope is Scope.MINE else None
    with state.store.reading() as uow:
        found = uow.repository(ContactRepository).contacts(caller.org_id, user=user)
    return [ContactOut.of(c) for c in found]


@router.get("/companies", response_model=list[CompanyOut])
def companies(
    caller: Caller,
    state: State,
    scope: ScopeQuery = Scope.FIRM,
    type: Annotated[CompanyType | None, Query(description="One tab.")] = None,
    filter: Annotated[
        str | None, Query(min_length=1, max_length=200, description="A saved filter's name.")
    ] = None,
) -> list[CompanyOut]:
    """Companies by e-mail domain and from the CRM, with type and relationship partner."""
    user = caller.actor().email
    with state.store.reading() as uow:
        found = uow.repository(ContactRepository).companies(
            caller.org_id, user=user, scope=scope, type=type, saved=filter
        )
    return [CompanyOut.of(c) for c in found]
