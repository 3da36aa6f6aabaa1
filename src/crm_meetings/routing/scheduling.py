"""Scheduling a chosen slot: a booking request's, or a rotation booking link's.

Both go through the normal schedule action (:func:`crm_meetings.actions.schedule`), acting
as the host, with the requester as the invitee; so the CRM record, the conferencing
meeting, the invitation and (for a rotation) the member's count are written as any
schedule writes them, under one idempotency key:

- a booking request: ``booking-request:<request id>`` — the request is scheduled once;
  a repeat of the same choice returns the same meeting, another choice after that is a
  conflict naming the scheduled time;
- a rotation link: derived from (rotation, host, requester, start) — a repeated
  submission books and counts once.

The slot must be one of the host's free slots now (working hours, not taken): a slot
taken meanwhile is a :class:`SlotTakenError` (409) listing fresh ones. The requester
then gets an answer with the host in copy (:meth:`TrustRepository.answer`).

Known window: the free-slot check and the action's commit are not one transaction (the
action calls the CRM and the provider in between), so two requesters choosing the same
slot of the same host within that time could both be scheduled; one process serialises
choices per host (a lock), which covers one web server or one worker.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from crm_meetings.actions import ActionContext, ActionLedger, ActionResult, ScheduleRequest
from crm_meetings.actions import schedule as schedule_action
from crm_meetings.errors import ConflictError, PermissionDeniedError, ValidationError
from crm_meetings.model import Invitee, Person, normalize_email, utc
from crm_meetings.routing.requests import (
    SLOT_FORMAT,
    AssistantConfig,
    RequestStatus,
    TrustRepository,
    owner_slots,
)
from crm_meetings.routing.slots import Slot
from crm_meetings.store import Store

__all__ = [
    "HostContext",
    "Scheduled",
    "SlotTakenError",
    "choose_request_slot",
    "choose_rotation_slot",
    "read_choice",
]

#: the actions' context acting as ``host`` in ``org_id`` (its CRM connector, provider, sender)
HostContext = Callable[[str, Person], ActionContext]

#: every free slot is checked, not only the ten offered first
_ALL: Final = 10_000
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class SlotTakenError(ConflictError):
    """The chosen time is not free (taken meanwhile, or never offered); ``slots`` are the
    host's free slots now."""

    code = "slot_taken"
    default_hint = "Choose one of the free times listed with this answer."

    def __init__(self, message: str, slots: Sequence[Slot], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.slots = list(slots)

    def to_dict(self) -> dict[str, object]:
        listed = [{"start": a.isoformat(), "end": b.isoformat()} for a, b in self.slots]
        return {**super().to_dict(), "slots": listed}


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A chosen slot, scheduled: the action's result (``replayed`` for a repeat)."""

    result: ActionResult
    host: str
    requester: str


def _host_lock(host: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(host, threading.Lock())


def _check_free(store: Store, host: str, start: datetime, config: AssistantConfig) -> Slot:
    """The slot starting at ``start`` if it is one of ``host``'s free slots now."""
    with store.transaction() as uow:
        free = owner_slots(uow, host, config, uow.clock(), limit=_ALL)
    slot = (start, start + config.meeting_length)
    if slot in free:
        return slot
    zone = ZoneInfo(config.zone)
    raise SlotTakenError(
        f"{start.astimezone(zone).strftime(SLOT_FORMAT)} ({config.zone}) is not free with "
        f"{host} any more",
        free[:10],
        hint="Choose one of the free times listed with this answer."
        if free
        else f"{host} has no free time in the next {config.offer_days} days; try later.",
    )


def _replay(store: Store, org_id: str, key: str, start: datetime) -> ActionResult | None:
    """The meeting an earlier choice under ``key`` scheduled, if any; another time than
    ``start`` is a conflict (a request is scheduled once)."""
    with store.transaction() as uow:
        entry = uow.repository(ActionLedger).find(org_id, key)
    if entry is None or entry.result is None:
        return None
    done = ActionResult.from_json(entry.result).as_replay()
    if done.meeting.start != start:
        raise ConflictError(
            f"This request is already scheduled, at {done.meeting.start.isoformat()}",
            hint="Ask the host to move the meeting if that time no longer suits you.",
        )
    return done


def choose_request_slot(
    store: Store,
    contexts: HostContext,
    request_id: str,
    start: datetime,
    *,
    config: AssistantConfig,
    requester: str | None = None,
) -> Scheduled:
    """Schedule an accepted or approved request at ``start`` (one of the owner's free
    slots), the owner hosting; ``requester``, when given (an e-mail reply), must be who
    made the request. Answers the requester with the owner in copy."""
    start = utc(start, "start")
    with store.transaction() as uow:
        trust = uow.repository(TrustRepository)
        found = trust.get(request_id)
        org_id = trust.org_of(request_id)
    if requester is not None and normalize_email(requester, "from") != found.requester:
        raise PermissionDeniedError(
            f"Only {found.requester} may choose a time for request {found.id}",
            hint="Reply from the address the request was made from.",
        )
    if found.status not in (RequestStatus.ACCEPTED, RequestStatus.APPROVED):
        raise ConflictError(
            f"Request {found.id} is {found.status.value}: only accepted or approved requests "
            "are scheduled",
            hint="Wait for the owner's approval.",
        )
    key = f"booking-request:{found.id}"
    with _host_lock(found.owner):
        result = _replay(store, org_id, key, start)
        if result is None:
            slot = _check_free(store, found.owner, start, config)
            request = ScheduleRequest(
                idempotency_key=key,
                subject=found.subject or f"Meeting with {found.requester_name or found.requester}",
                start=slot[0],
                end=slot[1],
                timezone=config.zone,
                invitees=(Invitee(found.requester, found.requester_name),),
                description=found.body[:2000],
                organizer=Person(found.owner),
            )
            result = schedule_action(contexts(org_id, Person(found.owner)), request)
    with store.transaction() as uow:
        uow.repository(TrustRepository).answer(
            found.id, config=config, topic=f"scheduled:{found.id}", nonce="",
            body=scheduled_text(result, config),
        )  # fmt: skip
    return Scheduled(result, found.owner, found.requester)


def choose_rotation_slot(
    store: Store,
    contexts: HostContext,
    *,
    org_id: str,
    rotation_id: str,
    host: str,
    requester: Invitee,
    start: datetime,
    subject: str,
    message: str,
    config: AssistantConfig,
) -> Scheduled:
    """Schedule a rotation booking: ``host`` (the member the rotation picked for the page)
    at ``start``, one of their free slots; the count goes to ``host`` in the action's
    commit. A repeat of the same submission replays."""
    start = utc(start, "start")
    host = normalize_email(host, "host")
    material = "\n".join(("rotation", rotation_id, host, requester.email, start.isoformat()))
    key = f"rotation-booking:{hashlib.sha256(material.encode()).hexdigest()[:48]}"
    with _host_lock(host):
        result = _replay(store, org_id, key, start)
        if result is None:
            slot = _check_free(store, host, start, config)
            request = ScheduleRequest(
                idempotency_key=key,
                subject=subject,
                start=slot[0],
                end=slot[1],
                timezone=config.zone,
                invitees=(requester,),
                description=message,
                organizer=Person(host),
                rotation=rotation_id,
            )
            result = schedule_action(contexts(org_id, Person(host)), request)
    return Scheduled(result, host, requester.email)


def scheduled_text(result: ActionResult, config: AssistantConfig) -> str:
    """The answer once a time is scheduled."""
    meeting = result.meeting
    zone = ZoneInfo(config.zone)
    when = f"{meeting.start.astimezone(zone).strftime(SLOT_FORMAT)} ({config.zone})"
    join = f"\nJoin: {meeting.join_url}" if meeting.join_url else ""
    return (
        f"Your meeting with {meeting.organizer.email} is scheduled for {when}.{join}\n"
        "The invitation is in a separate e-mail; accept it to add the meeting to your calendar."
    )


_MONTHS: Final = [datetime(2000, m, 1).strftime("%B").lower() for m in range(1, 13)]
_WRITTEN: Final = re.compile(
    r"(\d{1,2}) (" + "|".join(_MONTHS) + r") (\d{4}),? (\d{1,2}):(\d{2})", re.IGNORECASE
)
_ISO: Final = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?")


def read_choice(body: str, zone: str) -> datetime:
    """The time a reply chose: the first unquoted line holding an offered time as the
    offer wrote it (:data:`SLOT_FORMAT`, in ``zone``) or an ISO 8601 time (UTC unless
    it says). ValidationError when there is none."""
    tz = ZoneInfo(zone)
    for line in body.splitlines():
        if line.lstrip().startswith(">"):
            continue  # quoted from our offer: not a choice
        written = _WRITTEN.search(line)
        if written:
            day, month, year, hour, minute = written.groups()
            local = datetime(
                int(year), _MONTHS.index(month.lower()) + 1, int(day), int(hour), int(minute),
                tzinfo=tz,
            )  # fmt: skip
            return utc(local, "start")
        iso = _ISO.search(line)
        if iso:
            parsed = datetime.fromisoformat(iso.group(0).replace(" ", "T"))
            return utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=tz), "start")
    raise ValidationError(
        "body",
        "the reply names none of the offered times",
        hint="Reply with one of the offered times, copied as it was written.",
    )
