"""The public booking page and API, approval links, and the owner's queue in the panel API."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.commands.rotation import assistant_config
from crm_meetings.config import Settings
from crm_meetings.routing.requests import RequestStatus, TrustRepository
from crm_meetings.routing.rotations import RotationRepository
from crm_meetings.routing.trust import ApprovalAction, verify_approval
from crm_meetings.store import Store
from crm_meetings.web.booking import host_contexts, use_host_contexts

if TYPE_CHECKING:
    from conftest import Clock, Stack, Web

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


# --- choosing an offered slot schedules the meeting -------------------------------------


@pytest.fixture
def host(app: FastAPI, stack: Stack, store: Store, settings: Settings, clock: Clock) -> str:
    """The seeded rep (a Zoom user) signed up as an owner; the app schedules on the stack."""
    use_host_contexts(app, host_contexts(settings, store, stack.clients, clock=clock))
    with store.transaction() as uow:
        return uow.repository(TrustRepository).signup(ORG, stack.organizer).owner


def offer(web: Web, host: str, requester: str) -> Any:
    body = web.client.post(f"/book/{host}", json={"email": requester, "name": "Bea"}).json()
    assert body["status"] == "accepted", body
    assert body["slots"]
    assert body["choose_url"]
    body["choose"] = "/book/choose/" + body["choose_url"].rsplit("/", 1)[1]
    return body


def test_choosing_an_offered_slot_schedules_the_meeting_once(
    web: Web, host: str, stack: Stack
) -> None:
    requester = "bea@" + host.split("@")[1]  # the owner's domain: trusted
    offered = offer(web, host, requester)
    start = offered["slots"][1]["start"]
    chosen = web.client.post(offered["choose"], json={"start": start})
    assert chosen.status_code == 200, chosen.text
    body = chosen.json()
    assert (body["status"], body["host"], body["start"]) == ("scheduled", host, start)
    assert body["join_url"]
    assert not body["replayed"]
    [event] = [e for e in stack.events() if e["Subject"] == "Meeting request from the booking page"]
    again = web.client.post(offered["choose"], json={"start": start})
    assert again.json()["replayed"]
    assert again.json()["meeting_id"] == body["meeting_id"]
    assert [e["Id"] for e in stack.events() if e["Subject"] == event["Subject"]] == [event["Id"]]
    other = web.client.post(offered["choose"], json={"start": offered["slots"][2]["start"]})
    assert other.status_code == 409
    assert "already scheduled" in other.json()["message"]
    with web.store.transaction() as uow:
        invited = uow.session.scalars(
            sa.select(OutboxMessageRow.recipient).where(
                OutboxMessageRow.meeting_uid.not_like("%:%")  # notices' topics hold a colon
            )
        ).all()
    assert invited == [requester]  # the invitation
    sent = mails(web.store)
    answers = {r for r, t in sent if "is scheduled for" in t}
    assert answers == {requester, host}  # the answer, the owner in copy
    assert all(f"Cc: {host}" in t for r, t in sent if r == requester and "scheduled for" in t)


def test_a_slot_taken_meanwhile_is_a_409_with_fresh_slots(web: Web, host: str) -> None:
    domain = host.split("@")[1]
    first, second = offer(web, host, f"bea@{domain}"), offer(web, host, f"cal@{domain}")
    start = first["slots"][0]["start"]
    assert web.client.post(first["choose"], json={"start": start}).status_code == 200
    taken = web.client.post(second["choose"], json={"start": start})
    assert taken.status_code == 409, taken.text
    body = taken.json()
    assert body["code"] == "slot_taken"
    assert "is not free" in body["message"]
    assert body["slots"]
    assert start not in [s["start"] for s in body["slots"]]
    page = web.client.post(second["choose"], data={"start": start}, headers=HTML)
    assert page.status_code == 409
    assert 'data-code="slot_taken"' in page.text
    assert '<ul class="slots">' in page.text
    fresh = body["slots"][0]["start"]
    done = web.client.post(second["choose"], data={"start": fresh}, headers=HTML)
    assert done.status_code == 200
    assert 'data-status="scheduled"' in done.text


def test_a_choice_link_is_checked_and_its_input_validated(web: Web, host: str) -> None:
    offered = offer(web, host, "bea@" + host.split("@")[1])
    page = web.client.get(offered["choose"], headers=HTML)
    assert page.status_code == 200
    assert page.text.count('name="start"') == len(offered["slots"])
    body, _, mac = offered["choose"].rsplit("/", 1)[1].partition(".")
    first = {"start": offered["slots"][0]["start"]}
    forged = web.client.post(f"/book/choose/{body}.{mac[::-1]}", json=first)
    assert forged.status_code == 403
    assert web.client.get(f"/book/choose/{body}.{mac[::-1]}").status_code == 403
    assert web.client.post(offered["choose"], json={"start": "soon"}).status_code == 422
    extra = {"start": offered["slots"][0]["start"], "meeting": "x"}
    assert web.client.post(offered["choose"], json=extra).status_code == 422
    odd = web.client.post(offered["choose"], json={"start": "2026-03-02T09:10:00+00:00"})
    assert odd.status_code == 409  # not one of the offered times
    assert odd.json()["code"] == "slot_taken"


def test_without_host_contexts_choosing_answers_503(web: Web, owner: str) -> None:
    offered = offer(web, OWNER, "bob@acme.example")
    response = web.client.post(offered["choose"], json={"start": offered["slots"][0]["start"]})
    assert response.status_code == 503
    assert response.json()["code"] == "booking_unavailable"


# --- a rotation's booking link ----------------------------------------------------------


@pytest.fixture
def rotation(host: str, store: Store) -> str:
    """The seeded rep and a colleague on holiday (so the pick is the Zoom user)."""
    with store.transaction() as uow:
        rotations = uow.repository(RotationRepository)
        made = rotations.create(ORG, "Inbound", users=[host, "away@" + host.split("@")[1]])
        rotations.set_available(made.id, "away@" + host.split("@")[1], False)
        return made.id


def test_a_rotation_link_books_the_picked_member_and_counts_it_once(
    web: Web, host: str, rotation: str, stack: Stack
) -> None:
    offered = web.client.get(f"/book/rotation/{rotation}")
    assert offered.status_code == 200, offered.text
    body = offered.json()
    assert body["host"] == host
    assert body["explanation"]["chosen"] == host
    assert body["explanation"]["skipped"] == [
        {"email": "away@" + host.split("@")[1], "reason": "marked unavailable"}
    ]
    page = web.client.get(f"/book/rotation/{rotation}", headers=HTML)
    assert f'data-host="{host}"' in page.text
    assert page.text.count('name="start"') == len(body["slots"])
    choice = {
        "email": "zed@client.example", "name": "Zed", "message": "Demo please",
        "start": body["slots"][0]["start"], "token": body["token"],
    }  # fmt: skip
    booked = web.client.post(f"/book/rotation/{rotation}", json=choice)
    assert booked.status_code == 200, booked.text
    assert (booked.json()["host"], booked.json()["start"]) == (host, choice["start"])
    again = web.client.post(f"/book/rotation/{rotation}", json=choice)
    assert again.json()["replayed"]
    assert [e["Subject"] for e in stack.events()].count("Demo please") == 1
    with web.store.transaction() as uow:
        rotations = uow.repository(RotationRepository)
        assert rotations.get(rotation).member(host).count == 1
        booking = rotations.booking_for(booked.json()["meeting_id"])
    assert booking is not None
    assert booking.member == booking.explanation.chosen == host
    taken = web.client.post(
        f"/book/rotation/{rotation}", json={**choice, "email": "amy@client.example"}
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "slot_taken"
    assert choice["start"] not in [s["start"] for s in taken.json()["slots"]]
    form = {**choice, "email": "amy@client.example", "start": taken.json()["slots"][0]["start"]}
    done = web.client.post(f"/book/rotation/{rotation}", data=form, headers=HTML)
    assert 'data-status="scheduled"' in done.text
    with web.store.transaction() as uow:
        assert uow.repository(RotationRepository).get(rotation).member(host).count == 2


def test_a_rotation_link_checks_its_token_and_input(web: Web, host: str, rotation: str) -> None:
    body = web.client.get(f"/book/rotation/{rotation}").json()
    choice = {"email": "zed@client.example", "start": body["slots"][0]["start"]}
    forged = web.client.post(
        f"/book/rotation/{rotation}", json={**choice, "token": body["token"][:-3] + "abc"}
    )
    assert forged.status_code == 403
    for bad in ({**choice}, {**choice, "token": body["token"], "email": "nope"}):
        assert web.client.post(f"/book/rotation/{rotation}", json=bad).status_code == 422
    assert web.client.get("/book/rotation/rot_missing").status_code == 404
    with web.store.transaction() as uow:
        uow.repository(RotationRepository).set_available(rotation, host, False)
    nobody = web.client.get(f"/book/rotation/{rotation}")
    assert nobody.status_code == 409
    assert "Nobody" in nobody.json()["message"]
