"""The panel's cancel acts at the meeting's own provider: a meeting scheduled on GoTo
(e.g. `meeting schedule --provider goto`) is cancelled at GoTo by a web app whose default
provider is Zoom, and Zoom gets no call. A web app without [goto] still cancels it in the
CRM, tells the invitees and warns that the GoTo meeting is left.

The stack is the web suite's (sandboxed Salesforce, Zoom and here GoTo too, an SMTP sink),
wired by :func:`~crm_meetings.web.wiring.live_services` as `web serve` wires it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crm_meetings.actions import ActionContext, ScheduleRequest, schedule
from crm_meetings.conferencing import ConferencingProvider
from crm_meetings.model import CrmKind, Invitee, Meeting, MeetingStatus, Person
from crm_meetings.sandbox.server import Sandbox
from crm_meetings.sandbox.testing import load_module
from crm_meetings.store import Store
from crm_meetings.web.services import WebServices
from crm_meetings.web.wiring import Clients

if TYPE_CHECKING:
    from conftest import Clock, Stack, Web

webconf = load_module(Path(__file__).parent / "conftest.py")
INVITEE = Invitee("zed@client.example", "Zed")


@pytest.fixture(params=[("zoom", "goto"), ("zoom",)], ids=["goto-configured", "goto-gone"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Salesforce, Zoom (the default) and GoTo on one sandbox; the web's clients know the
    providers of the param."""
    sandbox = Sandbox(["salesforce", "zoom", "goto"], seed=webconf.STACK_SEED).start()
    build = {"zoom": webconf.PROVIDERS.build_zoom, "goto": webconf.PROVIDERS.build_goto}
    clients = Clients(
        lambda crm: webconf.SALESFORCE.make_connector(sandbox),
        lambda name: build[name](sandbox, []),
        crms=[CrmKind.SALESFORCE],
        providers=list(request.param),
    )
    try:
        assert sandbox.data is not None
        with webconf.MailSink() as mail:
            yield webconf.Stack(
                sandbox,
                clients,
                mail,
                webconf.SALESFORCE.related_record(sandbox),
                sandbox.data.users[0].email,
            )
    finally:
        clients.close()
        sandbox.stop()


@pytest.fixture
def services(store: Store, clock: Clock, stack: Stack) -> WebServices:
    return stack.services(store, clock)


def scheduled_on_goto(web: Web, stack: Stack, clock: Clock) -> Meeting:
    """What `crm-meetings meeting schedule --provider goto` leaves: a GoTo meeting."""
    goto: ConferencingProvider = webconf.PROVIDERS.build_goto(stack.sandbox, [])
    try:
        ctx = ActionContext(
            store=web.store,
            connector=stack.clients.connector(CrmKind.SALESFORCE),
            provider=goto,
            actor=Person(stack.organizer),
            clock=clock,
            org_id=web.ORG,
        )
        start = clock() + timedelta(days=2)
        request = ScheduleRequest(
            idempotency_key="s-goto",
            subject="Pricing call",
            start=start,
            end=start + timedelta(hours=1),
            timezone="Europe/Paris",
            invitees=(INVITEE,),
            related=(stack.account,),
        )
        meeting = schedule(ctx, request).meeting
    finally:
        goto.close()
    assert meeting.provider == "goto"
    return meeting


def at_goto(stack: Stack, meeting: Meeting) -> dict[str, Any]:
    row: dict[str, Any] = stack.sandbox.state("goto")["meetings"][meeting.provider_meeting_id]
    return row


def test_the_panel_cancels_a_goto_meeting_at_goto(web: Web, stack: Stack, clock: Clock) -> None:
    meeting = scheduled_on_goto(web, stack, clock)
    token = web.login(email=stack.organizer, record=stack.account)
    zoom_calls = stack.sandbox.calls.count("zoom")
    response = web.client.post(
        f"/api/v1/meetings/{meeting.id}/cancel",
        headers={**web.csrf(token), "Idempotency-Key": "c-goto"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meeting"]["status"] == MeetingStatus.CANCELLED.value
    assert [m["method"] for m in body["messages"]] == ["CANCEL"]
    assert stack.event(str(meeting.crm_record_id))["Meeting_Status__c"] == "cancelled"
    assert stack.sandbox.calls.count("zoom") == zoom_calls, "Zoom got no call"
    pid = meeting.provider_meeting_id
    if "goto" in stack.clients.providers:
        assert at_goto(stack, meeting)["deleted"]
        assert body["warnings"] == []
    else:
        assert not at_goto(stack, meeting)["deleted"]
        [warning] = body["warnings"]
        assert f"goto meeting {pid} could not be cancelled" in warning
        assert f"delete meeting {pid}" in warning
    stack.deliver(web.store, clock())
    assert stack.mail.itip() == [("REQUEST", 0, INVITEE.email), ("CANCEL", 1, INVITEE.email)]


def test_the_panel_edits_a_goto_meeting_at_goto_or_refuses_with_503(
    web: Web, stack: Stack, clock: Clock
) -> None:
    """A new subject is GoTo's to hold: with [goto] gone the edit changes nothing anywhere
    and says why (503: the service lacks a part; the rep's request is fine)."""
    meeting = scheduled_on_goto(web, stack, clock)
    token = web.login(email=stack.organizer, record=stack.account)
    response = web.client.patch(
        f"/api/v1/meetings/{meeting.id}",
        json={"expected_version": meeting.version, "subject": "Pricing call, moved"},
        headers={**web.csrf(token), "Idempotency-Key": "e-goto"},
    )
    if "goto" in stack.clients.providers:
        assert response.status_code == 200, response.text
        assert at_goto(stack, meeting)["subject"] == "Pricing call, moved"
        return
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "provider_not_configured"
    assert body["key"] == "goto.enabled"
    assert "nothing was changed" in body["message"]
    assert "Enable [goto] again" in body["hint"]
    assert at_goto(stack, meeting)["subject"] == "Pricing call"
    with web.store.reading() as uow:
        assert uow.meetings.get(meeting.id).subject == "Pricing call"
