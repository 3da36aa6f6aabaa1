"""The contact map from stored meetings and synced sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from crm_meetings.contacts.map import CompanyFilter, CompanyType, CrmAccount, Scope
from crm_meetings.contacts.store import ContactRepository
from crm_meetings.errors import NotFoundError
from crm_meetings.model import (
    Invitee,
    MeetingStatus,
    Participant,
    Person,
    ResponseStatus,
    Session,
)
from crm_meetings.store import DEFAULT_ORG_ID, Store

OLIVIA, PAUL = "olivia@acme.example", "paul@acme.example"
ORG = DEFAULT_ORG_ID


@pytest.fixture
def scenario(store: Store, make_meeting: Any, clock: Any) -> Store:
    """Olivia met Zed and Amy (Bob, a colleague, declined) and invited a prospect to a
    future meeting; Paul met Kim (free mail) and Zed, and Lou joined his call uninvited;
    a cancelled meeting only mailed its invitee."""
    now = clock.now
    past = make_meeting(start=now - timedelta(days=10), end=now - timedelta(days=10, hours=-1))
    theirs = make_meeting(
        start=now - timedelta(days=200),
        end=now - timedelta(days=200, hours=-1),
        organizer=Person(PAUL, "Paul"),
        invitees=(Invitee("kim@gmail.com", "Kim"), Invitee("zed@client.example", "Zed")),
    )
    recent = make_meeting(
        start=now - timedelta(days=2),
        end=now - timedelta(days=2, hours=-1),
        organizer=Person(PAUL, "Paul"),
        invitees=(Invitee("zed@client.example", "Zed"),),
    )
    future = make_meeting(invitees=(Invitee("new@prospect.example", "Nia"),))
    cancelled = make_meeting(
        start=now - timedelta(days=1),
        end=now - timedelta(days=1, hours=-1),
        invitees=(Invitee("gone@lost.example", "Gus"),),
        status=MeetingStatus.CANCELLED,
    )
    join = recent.start
    session = Session(
        "zoom", "s1", recent.provider_meeting_id or "", recent.start, recent.end,
        participants=(
            Participant("Zed", join, join + timedelta(minutes=50), "zed@client.example"),
            Participant("Lou", join, join + timedelta(minutes=20), "lou@other.example"),
            Participant("Phone", join, join + timedelta(minutes=5)),
        ),
    )  # fmt: skip
    with store.transaction() as uow:
        for meeting in (past, theirs, recent, future, cancelled):
            uow.meetings.add(meeting)
        uow.sessions.upsert_many([session], recent.id)
    return store


def emails(items: Any) -> list[str]:
    return [item.email for item in items]


def test_my_contacts_and_firm_wide(scenario: Store) -> None:
    with scenario.transaction() as uow:
        repo = uow.repository(ContactRepository)
        assert repo.firm_domains(ORG) == {"acme.example"}
        mine = repo.contacts(ORG, user=OLIVIA)
        pauls = repo.contacts(ORG, user=PAUL)
        firm = repo.contacts(ORG)
    assert emails(mine) == ["amy@client.example", "gone@lost.example", "new@prospect.example",
                            "zed@client.example"]  # fmt: skip
    assert emails(pauls) == ["kim@gmail.com", "lou@other.example", "zed@client.example"]
    assert set(emails(firm)) == set(emails(mine)) | set(emails(pauls))
    zed = next(c for c in firm if c.email == "zed@client.example")
    assert zed.meetings_90d == 2  # Olivia's and Paul's recent one; the session is not a third
    assert zed.users == {OLIVIA, PAUL}
    gone = next(c for c in firm if c.email == "gone@lost.example")
    assert gone.last_met is None  # cancelled: mailed, never met
    assert next(c for c in firm if c.email == "new@prospect.example").name == "Nia"


def test_companies_types_partners_and_crm_accounts(scenario: Store) -> None:
    with scenario.transaction() as uow:
        repo = uow.repository(ContactRepository)
        repo.set_profile(ORG, "Client.example", type=CompanyType.CLIENT, partner=OLIVIA)
        repo.put_crm_company(ORG, CrmAccount("prospect.example", "Prospect Inc",
                                             CompanyType.PROSPECT))  # fmt: skip
        firm = repo.companies(ORG, user=OLIVIA)
        clients = repo.companies(ORG, user=PAUL, type=CompanyType.CLIENT)
        pauls = repo.companies(ORG, user=PAUL, scope=Scope.MINE)
        repo.set_profile(ORG, "client.example", clear_partner=True)
        (cleared,) = repo.companies(ORG, user=PAUL, type=CompanyType.CLIENT)
    by_domain = {c.domain: c for c in firm}
    assert set(by_domain) == {
        "client.example",
        "lost.example",
        "other.example",
        "prospect.example",
    }  # fmt: skip  (gmail.com is free mail)
    assert by_domain["prospect.example"].name == "Prospect Inc"
    assert by_domain["prospect.example"].type is CompanyType.PROSPECT
    assert by_domain["client.example"].partner == OLIVIA
    assert [c.domain for c in clients] == ["client.example"]
    assert [c.domain for c in pauls] == ["client.example", "other.example"]
    assert cleared.partner is None
    assert cleared.type is CompanyType.CLIENT


def test_saved_filters_per_user(scenario: Store) -> None:
    with scenario.transaction() as uow:
        repo = uow.repository(ContactRepository)
        repo.set_profile(ORG, "client.example", type=CompanyType.CLIENT, partner=OLIVIA)
        for user in (OLIVIA, PAUL):
            repo.save_filter(ORG, user, CompanyFilter("My clients", Scope.FIRM,
                                                      CompanyType.CLIENT, "me"))  # fmt: skip
        assert repo.filters(ORG, OLIVIA) == [
            CompanyFilter("My clients", Scope.FIRM, CompanyType.CLIENT, "me")
        ]
        olivias = repo.companies(ORG, user=OLIVIA, saved="My clients")
        pauls = repo.companies(ORG, user=PAUL, saved="My clients")
        repo.delete_filter(ORG, PAUL, "My clients")
        with pytest.raises(NotFoundError):
            repo.companies(ORG, user=PAUL, saved="My clients")
    assert [c.domain for c in olivias] == ["client.example"]
    assert pauls == []


def test_declined_invitees_were_mailed_not_met(store: Store, make_meeting: Any, clock: Any) -> None:
    meeting = make_meeting(
        start=clock.now - timedelta(days=1),
        end=clock.now - timedelta(days=1, hours=-1),
        invitees=(Invitee("no@client.example", "No", ResponseStatus.DECLINED),),
    )
    with store.transaction() as uow:
        uow.meetings.add(meeting)
        (contact,) = uow.repository(ContactRepository).contacts(ORG)
    assert contact.last_met is None
