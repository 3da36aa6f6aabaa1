"""Invitations from an organisation address are logged on the CRM record once, after the
outbox delivered them: through the real connector, a real SMTP sink and the real store."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from crm_meetings.actions import ActionContext, MeetingRequest, ScheduleRequest, cancel, schedule
from crm_meetings.calendar.outbox import SmtpConfig, deliver_pending
from crm_meetings.model import Invitee
from crm_meetings.sandbox.base import FaultPlan
from crm_meetings.senders.crm_log import log_pending
from crm_meetings.senders.tables import MailLogRow
from crm_meetings.store import Store

if TYPE_CHECKING:
    from conftest import SmtpSink

from . import test_org_sender as org_sender

SALES = org_sender.SALES
configure = org_sender.configure
store = org_sender.store  # the fixture: a store at the head revision

pytestmark = pytest.mark.parametrize(
    "rig", ["salesforce-zoom", "hubspot-zoom", "zoho-zoom"], indirect=True
)
LOGGED = {"salesforce": "emails", "hubspot": "emails", "zoho": "notes"}


class Crash(Exception):
    """The logger dies between the CRM's answer and recording it."""


def logged(rig: Any) -> list[dict[str, Any]]:
    """The e-mail activities the CRM emulator holds."""
    rows: list[dict[str, Any]] = rig.sandbox.state(rig.crm)[LOGGED[rig.crm]]
    return rows


def book(ctx: ActionContext, rig: Any) -> str:
    start = ctx.clock() + timedelta(days=2)
    return schedule(ctx, ScheduleRequest(
        idempotency_key="k-log", subject="Quarterly review", start=start,
        end=start + timedelta(hours=1), timezone="Europe/Paris",
        invitees=(Invitee("zed@client.example", "Zed"),), related=(rig.related,),
    )).meeting.id  # fmt: skip


def statuses(store: Store) -> list[str]:
    with store.transaction() as uow:
        return list(uow.session.scalars(sa.select(MailLogRow.status).order_by(MailLogRow.id)))


def delivered_from_the_org_address(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, config: SmtpConfig
) -> dict[Any, Any]:
    """A meeting booked by a rep whose profile may send from the org address, its mail
    delivered and so due to be logged; the connectors ``log_pending`` takes."""
    configure(store, ctx.org_id, ["rep"])
    book(replace(ctx, profile="rep"), rig)
    deliver_pending(store, config, clock())
    return {ctx.connector.crm: ctx.connector}


def test_logged_once_after_delivery(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, smtp_sink: tuple[SmtpConfig, SmtpSink]
) -> None:
    config, sink = smtp_sink
    connectors = {ctx.connector.crm: ctx.connector}
    configure(store, ctx.org_id, ["rep"])
    ctx = replace(ctx, profile="rep")
    meeting = book(ctx, rig)
    assert log_pending(store, connectors, clock()).attempted == 0  # not delivered yet
    assert logged(rig) == []
    assert len(deliver_pending(store, config, clock()).sent) == 2  # + the confirmation code
    report = log_pending(store, connectors, clock())
    assert len(report.logged) == 1
    assert log_pending(store, connectors, clock.advance(hours=3)).attempted == 0
    (activity,) = logged(rig)
    assert SALES in json.dumps(activity)
    assert "Invitation: Quarterly review" in json.dumps(activity)

    cancel(ctx, MeetingRequest(idempotency_key="k-cancel", meeting=meeting))
    deliver_pending(store, config, clock())
    assert len(log_pending(store, connectors, clock()).logged) == 1
    assert len(logged(rig)) == 2
    assert len(sink.received) == 3
    assert statuses(store) == ["logged", "logged"]


def test_mail_from_the_organizer_is_not_logged(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, smtp_sink: tuple[SmtpConfig, SmtpSink]
) -> None:
    config, _ = smtp_sink
    configure(store, ctx.org_id, ["admin"])
    book(replace(ctx, profile="rep"), rig)  # rep may not use the address: the organizer sends
    deliver_pending(store, config, clock())
    assert log_pending(store, {ctx.connector.crm: ctx.connector}, clock()).attempted == 0
    assert statuses(store) == []


def test_a_crm_outage_delays_the_log_not_the_mail(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, smtp_sink: tuple[SmtpConfig, SmtpSink]
) -> None:
    config, sink = smtp_sink
    connectors = {ctx.connector.crm: ctx.connector}
    configure(store, ctx.org_id, ["rep"])
    book(replace(ctx, profile="rep"), rig)
    rig.sandbox.faults.set(rig.crm, FaultPlan(server_error=1.0))
    assert len(deliver_pending(store, config, clock()).sent) == 2  # + the confirmation code
    assert len(sink.received) == 2
    assert len(log_pending(store, connectors, clock()).deferred) == 1
    assert statuses(store) == ["pending"]
    rig.sandbox.faults.clear(rig.crm)
    assert log_pending(store, connectors, clock()).attempted == 0  # waits for its backoff
    assert len(log_pending(store, connectors, clock.advance(minutes=2)).logged) == 1
    assert len(logged(rig)) == 1


def test_a_crash_after_the_crm_wrote_does_not_log_twice(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, smtp_sink: tuple[SmtpConfig, SmtpSink]
) -> None:
    connectors = delivered_from_the_org_address(ctx, rig, store, clock, smtp_sink[0])

    def crash(boundary: str) -> None:
        raise Crash(boundary)

    with pytest.raises(Crash):
        log_pending(store, connectors, clock(), hook=crash)
    assert len(logged(rig)) == 1
    assert statuses(store) == ["logging"]
    assert log_pending(store, connectors, clock.advance(minutes=1)).attempted == 0  # still ours
    assert len(log_pending(store, connectors, clock.advance(minutes=15)).logged) == 1
    assert len(logged(rig)) == 1
    assert statuses(store) == ["logged"]


# What refuses the logged e-mail on each CRM, and what the CRM's reason says.
# Salesforce: the meeting's Account deleted from under it; HubSpot and Zoho: a validation
# rule on the logged record (the sandbox's generic rejection, in the vendor's own form).
REFUSED = {
    "salesforce": "INVALID_CROSS_REFERENCE_KEY",
    "hubspot": "Property values were not valid",
    "zoho": "INVALID_DATA",
}
REJECTED_FIELD = {"hubspot": ("emails", "hs_email_subject"), "zoho": ("Notes", "Note_Title")}


def test_a_refused_email_fails_with_the_crms_reason_and_is_not_retried(
    ctx: ActionContext, rig: Any, store: Store, clock: Any, smtp_sink: tuple[SmtpConfig, SmtpSink]
) -> None:
    connectors = delivered_from_the_org_address(ctx, rig, store, clock, smtp_sink[0])
    if rig.crm == "salesforce":
        rig.sandbox.emulator("salesforce").remove("Account", rig.related.record_id)
    else:
        object_type, field = REJECTED_FIELD[rig.crm]
        rig.sandbox.reject(rig.crm, field=field, pattern=".*", object_type=object_type)
    assert len(log_pending(store, connectors, clock()).failed) == 1
    with store.transaction() as uow:
        (row,) = uow.session.scalars(sa.select(MailLogRow))
        assert row.status == "failed"
        assert REFUSED[rig.crm] in (row.last_error or "")
    assert log_pending(store, connectors, clock.advance(hours=3)).attempted == 0
    assert logged(rig) == []
