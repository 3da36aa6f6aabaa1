"""Who sends, who hosts, who may book, who we know: senders, rotations, trust, contacts.

* An organisation address is added; its confirmation code arrives at the SMTP sink, is
  read from that e-mail and entered; the address becomes the org's invitation sender.
* A rotation of the seeded reps (one of them away) assigns five meetings, each scheduled
  on a CRM by the rep it picked and sent from the organisation address.
* The rep's trust circle: a client's request is accepted and answered with free slots, a
  stranger's waits for the rep's approval (the approval e-mail goes out).
* The contact map built from all of the above and the synced history.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from rich.table import Table

from crm_meetings.actions import ScheduleRequest, schedule
from crm_meetings.calendar.imip import Sender
from crm_meetings.contacts.map import Company, CompanyType, Contact, CrmAccount, Scope
from crm_meetings.contacts.store import ContactRepository
from crm_meetings.demo.lifecycle import tomorrow_at
from crm_meetings.demo.system import DemoSystem
from crm_meetings.errors import CrmMeetingsError
from crm_meetings.model import Invitee, Meeting, Person
from crm_meetings.routing.requests import AssistantConfig, BookingRequest, TrustRepository
from crm_meetings.routing.rotations import Booking, RotationRepository
from crm_meetings.senders.store import DEFAULT_USE, SenderRepository, confirm_address, sender_for

__all__ = [
    "ORG_ADDRESS",
    "Requests",
    "book_through_rotation",
    "confirm_org_address",
    "contact_tables",
    "receive_requests",
    "rotation_table",
]

ORG_ADDRESS = "meetings@sales.example.com"
PROFILE = "sales"
ROTATION_CRM, ROTATION_PROVIDER = "hubspot", "zoom"
#: the org whose contact map is shown: the history sync's CRM (its meetings have sessions)
CONTACTS_CRM = "salesforce"
_CODE = re.compile(r"Confirmation code:\s*(\S+)")


def _parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


# --- organisation address ----------------------------------------------------------------


def confirm_org_address(system: DemoSystem) -> Sender:
    """Add the address, read the code it was mailed, confirm it, make it the sender."""
    smtp = system.settings.smtp
    mail_from = Sender(smtp.from_address or ORG_ADDRESS, "crm-meetings")
    org = system.org(ROTATION_CRM)  # the rotation's invitations go out from it
    with system.store.transaction() as uow:
        address = uow.repository(SenderRepository).add(
            org,
            ORG_ADDRESS,
            "Sales Team Meetings",
            [PROFILE],
            mail_from=mail_from,
            reply_to=system.organizer.email,
        )
    _, files = system.deliver()
    codes = [
        found.group(1)
        for path in files
        if ORG_ADDRESS in path.name and (found := _CODE.search(_text(_parse(path.read_bytes()))))
    ]
    if not codes:
        raise CrmMeetingsError(f"no confirmation code reached {ORG_ADDRESS}")
    confirm_address(system.store, org, address.id, codes[-1])
    with system.store.transaction() as uow:
        uow.repository(SenderRepository).set_use(org, *DEFAULT_USE, address.id)
        system.sender = sender_for(uow, org, PROFILE)
    return system.sender


# --- rotation ------------------------------------------------------------------------------


def book_through_rotation(system: DemoSystem, count: int = 5) -> list[tuple[Booking, Meeting]]:
    """A rotation of the seeded reps, the last one away; ``count`` meetings booked."""
    reps = {user.email: Person(user.email, user.name) for user in system.data.users}
    emails = list(reps)
    with system.store.transaction() as uow:
        rotations = uow.repository(RotationRepository)
        rotation = rotations.create(system.org(ROTATION_CRM), "Inbound demo requests", users=emails)
        rotations.set_available(rotation.id, emails[-1], False)
    related = system.record_page(ROTATION_CRM)
    booked: list[tuple[Booking, Meeting]] = []
    for number in range(count):
        now = datetime.now(UTC)
        with system.store.transaction() as uow:
            host = uow.repository(RotationRepository).suggest(rotation.id, now).chosen
        if host is None:
            raise CrmMeetingsError("the rotation found nobody available")
        guest = system.person(3 + number % 3)
        start = tomorrow_at(9 + number, "UTC", days=2)
        ctx = system.context(ROTATION_CRM, ROTATION_PROVIDER, actor=reps[host])
        meeting = schedule(
            ctx,
            ScheduleRequest(
                idempotency_key=f"demo-rotation-{number}",
                subject=f"Product demo for {guest.name}",
                start=start,
                end=start + timedelta(minutes=30),
                timezone="UTC",
                invitees=(Invitee(guest.email, guest.name),),
                related=(related,),
            ),
        ).meeting
        with system.store.transaction() as uow:
            booking = uow.repository(RotationRepository).book(rotation.id, meeting.id, now)
        if booking.member != host:
            raise CrmMeetingsError(f"the rotation booked {booking.member}, not {host}")
        booked.append((booking, meeting))
    _, files = system.deliver()
    senders = {str(_parse(path.read_bytes())["From"]) for path in files}
    if not senders or any(ORG_ADDRESS not in sender for sender in senders):
        raise CrmMeetingsError(f"invitations went out from {sorted(senders)}, not {ORG_ADDRESS}")
    return booked


def _why(booking: Booking) -> str:
    """The explanation in one line: the pick order with counts, then who was skipped."""
    explanation = booking.explanation
    order = ", ".join(
        f"{c.email.partition('@')[0]} {c.count} booked, last "
        + (c.last_scheduled.strftime("%H:%M:%S") if c.last_scheduled else "never")
        for c in explanation.candidates
    )
    skipped = "; ".join(f"{e.partition('@')[0]} skipped: {r}" for e, r in explanation.skipped)
    return f"order: {order}" + (f"; {skipped}" if skipped else "")


def rotation_table(booked: list[tuple[Booking, Meeting]]) -> Table:
    """Each booking: the meeting, its CRM record, the host and why."""
    grid = Table(title="Rotation 'Inbound demo requests' (fewest booked first, ties: longest idle)")
    for column in ("#", "CRM record", "host", "why"):
        grid.add_column(column, overflow="fold")
    for number, (booking, meeting) in enumerate(booked, 1):
        host = booking.member.partition("@")[0]
        grid.add_row(str(number), meeting.crm_record_id or "—", host, _why(booking))
    return grid


# --- trust circle ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requests:
    trusted: BookingRequest
    slots: int
    untrusted: BookingRequest


def receive_requests(system: DemoSystem) -> Requests:
    """One request from a trusted client domain, one from a stranger; both by e-mail."""
    owner = system.organizer.email
    client = system.person(0)
    config = AssistantConfig(
        sender=Sender("assistant@sales.example.com", "Scheduling assistant"),
        secret=secrets.token_bytes(32),
        approval_url="https://crm-meetings.example/approvals/",
        zone=system.data.users[0].timezone,
    )
    with system.store.transaction() as uow:
        circles = uow.repository(TrustRepository)
        circles.signup(system.org(ROTATION_CRM), owner)
        circles.trust(owner, domains=[client.email.partition("@")[2]])
        trusted = circles.receive(
            owner, client.email, config=config, requester_name=client.name,
            subject="Follow-up on the proposal", cc=[owner], message_id="<req-1@demo.example>",
        )  # fmt: skip
        slots = circles.offer_slots(trusted.id, config=config)
        untrusted = circles.receive(
            owner, "someone@unknown-startup.example", config=config,
            requester_name="Sam Someone", subject="Quick intro call?", cc=[owner],
            message_id="<req-2@demo.example>",
        )  # fmt: skip
    system.deliver()
    return Requests(trusted, len(slots), untrusted)


# --- contacts ------------------------------------------------------------------------------


def contact_tables(system: DemoSystem) -> tuple[list[Contact], list[Company], Table, Table]:
    """My contacts and the firm-wide companies (seeded CRM accounts, one typed by hand)."""
    owner = system.organizer.email
    org = system.org(CONTACTS_CRM)
    with system.store.transaction() as uow:
        contacts = uow.repository(ContactRepository)
        for record in system.data.records:
            contacts.put_crm_company(org, CrmAccount(record.domain, record.company))
        first = system.data.records[0].domain
        contacts.set_profile(org, first, type=CompanyType.CLIENT, partner=owner)
        mine = contacts.contacts(org, user=owner)
        companies = contacts.companies(org, user=owner, scope=Scope.FIRM)
    people = Table(title=f"My contacts ({owner})")
    for column in ("name", "email", "last met", "meetings 90d"):
        people.add_column(column, overflow="fold")
    for c in mine:
        met = c.last_met.strftime("%Y-%m-%d") if c.last_met else "mailed"
        people.add_row(c.name, c.email, met, str(c.meetings_90d))
    firms = Table(title="Firm-wide companies")
    for column in ("company", "domain", "type", "partner", "contacts", "known best by"):
        firms.add_column(column, overflow="fold")
    for co in companies:
        firms.add_row(
            co.name, co.domain, co.type.value if co.type else "—", co.partner or "—",
            str(len(co.contacts)), co.known_best_by or "—",
        )  # fmt: skip
    return mine, companies, people, firms
