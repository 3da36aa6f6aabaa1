"""The public booking page and API, approval links, and the owner's queue in the panel API."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.commands.rotation import assistant_config
from crm_meetings.config import Settings
from crm_meetings.routing.requests import RequestStatus, TrustRepository
from crm_meetings.routing.trust import ApprovalAction, verify_approval
from crm_meetings.store import Store

if TYPE_CHECKING:
    from conftest import Clock, Web

OWNER = "olivia@acme.example"
ORG = "00Dxx0000001gEREAY"
BOOK = f"/book/{OWNER}"
HTML = {"Accept": "text/html"}


@pytest.fixture
def owner(store: Store) -> str:
    with store.transaction() as uow:
        return uow.repository(TrustRepository).signup(ORG, OWNER).owner


def mails(store: Store) -> list[tuple[str, str]]:
    """(recipient, text) of every queued mail, oldest first."""
    with store.transaction() as uow:
        rows = uow.session.execute(
            sa.select(OutboxMessageRow.recipient, OutboxMessageRow.raw).order_by(
                OutboxMessageRow.id
            )
        ).all()
    return [(r, raw.decode("ascii").replace("=\r\n", "").replace("=3D", "=")) for r, raw in rows]


def links(store: Store) -> dict[str, str]:
    """The approve / decline tokens of the last approval mail to the owner."""
    text = [t for r, t in mails(store) if r == OWNER and "Approve:" in t][-1]
    return dict(re.findall(r"(Approve|Decline): \S+/approvals/(\S+)", text))


def request_from(web: Web, requester: str, **extra: Any) -> Any:
    response = web.client.post(BOOK, json={"email": requester, "name": "Zed", **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_trusted_requester_sees_the_owners_free_slots(
    web: Web, owner: str, make_meeting: Any, clock: Clock
) -> None:
    busy = make_meeting(start=clock() + timedelta(days=1), end=clock() + timedelta(days=1, hours=8))
    with web.store.transaction() as uow:
        uow.meetings.add(busy, org_id=ORG)
    body = request_from(web, "Bob@ACME.example", message="Coffee next week?\nAny time.")
    assert body["status"] == "accepted"
    assert body["slots"]
    for slot in body["slots"]:  # none overlaps the owner's meeting
        assert slot["end"] <= busy.start.isoformat() or slot["start"] >= busy.end.isoformat()
    sent = {r for r, t in mails(web.store) if "is free at these times" in t}
    assert sent == {"bob@acme.example", OWNER}
    with web.store.transaction() as uow:
        assert uow.repository(TrustRepository).queue(OWNER) == []


def test_an_untrusted_requester_waits_for_the_owners_approval(web: Web, owner: str) -> None:
    body = request_from(web, "zed@client.example")
    assert body["status"] == "pending"
    assert body["slots"] == []
    assert "waiting for the owner's approval" in body["message"]
    assert set(links(web.store)) == {"Approve", "Decline"}
    assert [r for r, _ in mails(web.store)] == [OWNER]


def test_the_booking_page_and_its_form(web: Web, owner: str) -> None:
    page = web.client.get(BOOK, headers=HTML)
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert 'name="email"' in page.text
    answered = web.client.post(BOOK, data={"email": "zed@client.example", "name": "<b>Zed</b>"})
    assert answered.status_code == 200
    assert "waiting for the owner&#39;s approval" in answered.text
    assert 'data-status="pending"' in answered.text
    trusted = web.client.post(BOOK, data={"email": "bob@acme.example"})
    assert 'data-status="accepted"' in trusted.text
    assert '<ul class="slots">' in trusted.text


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"email": "Zed <zed@client.example>"}, "email"),
        ({"email": "zed@client.example", "message": "x" * 5001}, "message"),
        ({"email": "zed@client.example", "name": "n" * 256}, "name"),
        ({"email": "zed@client.example", "extra": "no"}, "extra"),
        ({}, "email"),
    ],
)
def test_booking_input_is_validated(
    web: Web, owner: str, payload: dict[str, str], field: str
) -> None:
    response = web.client.post(BOOK, json=payload)
    assert response.status_code == 422, response.text
    assert field in response.json()["field"]
    assert mails(web.store) == []


def test_an_unknown_owner_is_not_found(web: Web, owner: str) -> None:
    assert web.client.get("/book/nobody@acme.example").status_code == 404
    response = web.client.post("/book/nobody@acme.example", json={"email": "zed@client.example"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert web.client.post("/book/not-an-address", json={"email": "a@b.example"}).status_code == 422


def test_booking_is_rate_limited_per_client(web: Web, owner: str) -> None:
    for n in range(10):
        request_from(web, f"guest{n}@client.example")
    response = web.client.post(BOOK, json={"email": "guest@client.example"})
    assert response.status_code == 429
    assert response.json()["code"] == "too_many_requests"


def test_approve_link_approves_and_offers_slots(web: Web, owner: str) -> None:
    request_from(web, "zed@client.example")
    token = links(web.store)["Approve"]
    page = web.client.get(f"/approvals/{token}", headers=HTML)
    assert page.status_code == 200, page.text
    assert 'data-status="approved"' in page.text
    assert "zed@client.example" in page.text
    with web.store.transaction() as uow:
        (done,) = uow.repository(TrustRepository).queue(OWNER, None)
    assert done.status is RequestStatus.APPROVED
    offered = {r for r, t in mails(web.store) if "is free at these times" in t}
    assert offered == {"zed@client.example", OWNER}


def test_decline_link_declines(web: Web, owner: str) -> None:
    request_from(web, "zed@client.example")
    page = web.client.get(f"/approvals/{links(web.store)['Decline']}", headers=HTML)
    assert page.status_code == 200
    assert 'data-status="declined"' in page.text
    assert not [r for r, t in mails(web.store) if "is free at these times" in t]


def test_a_reused_link_is_refused(web: Web, owner: str) -> None:
    request_from(web, "zed@client.example")
    tokens = links(web.store)
    assert web.client.get(f"/approvals/{tokens['Approve']}").status_code == 200
    again = web.client.get(f"/approvals/{tokens['Approve']}", headers=HTML)
    assert again.status_code == 403
    assert "already used" in again.text
    other = web.client.get(f"/approvals/{tokens['Decline']}")
    assert other.status_code == 409
    assert other.json()["message"] == "This request is already approved."


def test_an_expired_link_is_refused(web: Web, owner: str, clock: Clock) -> None:
    request_from(web, "zed@client.example")
    clock.advance(days=3, seconds=1)
    page = web.client.get(f"/approvals/{links(web.store)['Approve']}", headers=HTML)
    assert page.status_code == 403
    assert "has expired" in page.text
    with web.store.transaction() as uow:
        assert uow.repository(TrustRepository).queue(OWNER)  # still pending, nothing changed


@pytest.mark.parametrize("tamper", ["flip", "swap", "garbage"])
def test_a_tampered_link_is_refused(web: Web, owner: str, tamper: str) -> None:
    request_from(web, "zed@client.example")
    tokens = links(web.store)
    body, _, mac = tokens["Approve"].partition(".")
    forged = {
        "flip": f"{body}.{mac[:-2]}{'A' if mac[-2] != 'A' else 'B'}{mac[-1]}",
        "swap": f"{tokens['Decline'].partition('.')[0]}.{mac}",
        "garbage": "not-a-token",
    }[tamper]
    response = web.client.get(f"/approvals/{forged}")
    assert response.status_code == 403
    assert response.json()["message"] == "This approval link is not genuine."
    with web.store.transaction() as uow:
        assert uow.repository(TrustRepository).queue(OWNER)


def test_links_are_signed_with_the_key_the_cli_derives(
    web: Web, owner: str, settings: Settings, clock: Clock
) -> None:
    request_from(web, "zed@client.example")
    secret = assistant_config(settings, "assistant@acme.example").secret
    _, action = verify_approval(secret, links(web.store)["Approve"], now=clock())
    assert action is ApprovalAction.APPROVE


def test_the_owners_queue_in_the_api(web: Web, owner: str, clock: Clock) -> None:
    request_from(web, "zed@client.example", message="Lunch?")
    clock.advance(minutes=1)
    request_from(web, "amy@client.example")
    request_from(web, "bob@acme.example")  # trusted: never queued
    web.login()
    queue = web.client.get("/api/v1/booking-requests")
    assert queue.status_code == 200, queue.text
    assert [(r["requester"], r["status"], r["channel"]) for r in queue.json()] == [
        ("zed@client.example", "pending", "web"),
        ("amy@client.example", "pending", "web"),
    ]
    assert queue.json()[0]["subject"] == "Lunch?"
    web.client.get(f"/approvals/{links(web.store)['Decline']}")  # amy's
    assert [r["requester"] for r in web.client.get("/api/v1/booking-requests").json()] == [
        "zed@client.example"
    ]


def test_the_queue_is_org_scoped_and_per_owner(web: Web, owner: str) -> None:
    request_from(web, "zed@client.example")
    web.login(org=web.OTHER_ORG)  # the same address, signed by another org
    assert web.client.get("/api/v1/booking-requests").json() == []
    web.login(email="paul@acme.example")  # a colleague sees only their own queue
    assert web.client.get("/api/v1/booking-requests").json() == []
    web.client.cookies.clear()
    assert web.client.get("/api/v1/booking-requests").status_code == 401
