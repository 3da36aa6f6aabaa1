"""What every action receives (:class:`ActionContext`) and returns (:class:`ActionResult`)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from crm_meetings.actions.codec import meeting_from_json, meeting_to_json
from crm_meetings.calendar.imip import OutgoingMail, Sender
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import NotFoundError, PermissionDeniedError
from crm_meetings.model import Meeting, Person, RecordRef
from crm_meetings.senders.store import sender_for
from crm_meetings.store import DEFAULT_ORG_ID, Clock, Store
from crm_meetings.store.repositories import utc_now
from crm_meetings.store.unit_of_work import UnitOfWork

__all__ = [
    "ActionContext",
    "ActionKind",
    "ActionResult",
    "Authorize",
    "QueuedMessage",
    "RecordLookup",
    "StepHook",
    "organizer_or_admin",
    "related_records_visible",
]


class ActionKind(StrEnum):
    SCHEDULE = "schedule"
    EDIT = "edit"
    CANCEL = "cancel"
    DELETE = "delete"
    SHARE = "share"
    ADD_TO_CALENDAR = "add_to_calendar"


#: Called at every step boundary as ``hook(action, boundary)``, e.g. ``("schedule",
#: "crm.create")`` once the CRM record exists and that progress is saved, and inside the
#: CRM create at :data:`CRM_CREATE_ANSWERED`. Tests raise from it to simulate a crash.
StepHook = Callable[[ActionKind, str], None]

#: The boundary inside the CRM create step: the CRM answered (the record exists) and the
#: step's progress is not saved yet, so a retry must find that record, not make another.
CRM_CREATE_ANSWERED: Final = "crm.create.answered"

#: Raises :class:`PermissionDeniedError` when ``actor`` may not act on ``meeting``.
Authorize = Callable[["ActionContext", Meeting, ActionKind], None]


def _no_hook(action: ActionKind, boundary: str) -> None:
    return None


def organizer_or_admin(ctx: ActionContext, meeting: Meeting, action: ActionKind) -> None:
    """The default policy: the organizer acts on their meetings; listed admins on any."""
    actor = ctx.actor.email
    if actor == meeting.organizer.email or actor in ctx.admins:
        return
    raise PermissionDeniedError(
        f"{actor} may not {action.value.replace('_', ' ')} meetings organised by "
        f"{meeting.organizer.email}",
        hint="Ask the organizer, or an admin listed for your organisation, to do it.",
    )


@runtime_checkable
class RecordLookup(Protocol):
    """A connector that can say whether a CRM record exists and its credentials see it."""

    def record_visible(self, ref: RecordRef) -> bool: ...


def related_records_visible(ctx: ActionContext, meeting: Meeting, action: ActionKind) -> None:
    """The related-record rule: the organizer may act on a record when the CRM, asked with
    the org's credentials, says it exists and is visible.

    Asked through ``connector.record_visible`` where the connector offers it; otherwise by
    listing the record's meetings, which a CRM that checks the record refuses with a
    not-found error (HubSpot does; Salesforce and Zoho answer an empty list, so for them
    the rule needs ``record_visible``).
    """
    lookup = ctx.connector if isinstance(ctx.connector, RecordLookup) else None
    for ref in meeting.related:
        try:
            visible = lookup.record_visible(ref) if lookup else _listable(ctx, ref)
        except NotFoundError:
            visible = False
        if not visible:
            raise PermissionDeniedError(
                f"{meeting.organizer.email} may not {action.value.replace('_', ' ')} a meeting "
                f"on {ref.object_type} {ref.record_id}: {ctx.connector.crm} does not show that "
                "record to crm-meetings",
                hint="Check the record id, and that the integration user may see the record.",
            )


def _listable(ctx: ActionContext, ref: RecordRef) -> bool:
    next(iter(ctx.connector.list_for_record(ref)), None)
    return True


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionContext:
    """Everything an action touches; the CLI, the web and tests each build one.

    ``sender`` is the address mail goes out from (``None``: the organizer). ``profile`` is
    the actor's profile (role): when given and the org has a confirmed invitation address
    that profile may send from (:func:`crm_meetings.senders.store.sender_for`), mail goes
    out from that address instead. ``authorize`` decides who may act on a meeting;
    ``related`` whether the organizer may schedule on its related records. ``lease`` is
    how long an attempt owns its idempotency key before a retry may take over (after a
    crash).

    ``provider`` is where new meetings are scheduled (the default; ``None``: none).
    ``providers`` is every conferencing provider the deployment configures, by name (it
    may build each on first access): edit, cancel and delete act at the provider a
    meeting was scheduled on (``Meeting.provider``), found there or as ``provider``
    (:meth:`provider_named`).
    """

    store: Store
    connector: Connector
    actor: Person
    provider: ConferencingProvider | None = None
    sender: Sender | None = None
    clock: Clock = utc_now
    id_factory: Callable[[], str] = _new_id
    org_id: str = DEFAULT_ORG_ID
    uid_domain: str = "crm-meetings"
    admins: frozenset[str] = frozenset()
    authorize: Authorize = organizer_or_admin
    related: Authorize = related_records_visible
    lease: timedelta = timedelta(minutes=5)
    hook: StepHook = _no_hook
    profile: str | None = None
    providers: Mapping[str, ConferencingProvider] = field(default_factory=dict)

    def provider_named(self, name: str | None) -> ConferencingProvider | None:
        """The configured provider called ``name`` (``provider`` or one of ``providers``);
        ``None`` when ``name`` is ``None`` or this context has no such provider."""
        if name is None:
            return None
        if self.provider is not None and self.provider.name == name:
            return self.provider
        return self.providers.get(name)

    def provider_names(self) -> list[str]:
        """The names of every provider this context can act on, sorted."""
        names = set(self.providers)
        if self.provider is not None:
            names.add(self.provider.name)
        return sorted(names)

    def sender_for(self, meeting: Meeting, uow: UnitOfWork | None = None) -> Sender:
        """The From of the meeting's mail: the org's invitation address when the actor's
        ``profile`` may send from it (read through ``uow``), else the configured address,
        else the organizer. A profile the address does not allow, or an org without one,
        sends as before: never from an address the profile may not use."""
        if self.profile is not None and uow is not None:
            try:
                return sender_for(uow, self.org_id, self.profile)
            except (NotFoundError, PermissionDeniedError):
                pass
        return self.sender or Sender.organizer(meeting)


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One iMIP message an action put in the outbox (``new``: not queued before)."""

    recipient: str
    method: str
    sequence: int
    subject: str
    new: bool = True

    @classmethod
    def of(cls, mail: OutgoingMail, *, new: bool) -> QueuedMessage:
        return cls(mail.recipient, mail.method.value, mail.sequence, mail.subject, new)


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action did: the meeting as it now is, the steps done, the mail queued.

    ``text`` is the invitation (share), ``ics`` the calendar file (add to calendar);
    ``replayed`` is true when an idempotency key returned an earlier result.
    """

    action: ActionKind
    meeting: Meeting
    done: tuple[str, ...] = ()
    messages: tuple[QueuedMessage, ...] = ()
    warnings: tuple[str, ...] = ()
    text: str | None = None
    ics: bytes | None = None
    replayed: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (``ics`` in base64); :meth:`from_json` reads it back."""
        return {
            "action": self.action.value,
            "meeting": meeting_to_json(self.meeting),
            "done": list(self.done),
            "messages": [
                {
                    "recipient": m.recipient,
                    "method": m.method,
                    "sequence": m.sequence,
                    "subject": m.subject,
                    "new": m.new,
                }
                for m in self.messages
            ],
            "warnings": list(self.warnings),
            "text": self.text,
            "ics": None if self.ics is None else base64.b64encode(self.ics).decode("ascii"),
            "replayed": self.replayed,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActionResult:
        ics = data.get("ics")
        return cls(
            action=ActionKind(data["action"]),
            meeting=meeting_from_json(data["meeting"]),
            done=tuple(data["done"]),
            messages=tuple(QueuedMessage(**m) for m in data["messages"]),
            warnings=tuple(data["warnings"]),
            text=data.get("text"),
            ics=None if ics is None else base64.b64decode(ics),
            replayed=bool(data.get("replayed", False)),
            extra=dict(data.get("extra", {})),
        )

    def as_replay(self) -> ActionResult:
        return replace(self, replayed=True)
