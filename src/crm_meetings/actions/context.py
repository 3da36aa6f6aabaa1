"""What every action receives (:class:`ActionContext`) and returns (:class:`ActionResult`)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from crm_meetings.actions.codec import meeting_from_json, meeting_to_json
from crm_meetings.calendar.imip import OutgoingMail, Sender
from crm_meetings.conferencing.base import ConferencingProvider
from crm_meetings.connectors.base import Connector
from crm_meetings.errors import PermissionDeniedError
from crm_meetings.model import Meeting, Person
from crm_meetings.store import DEFAULT_ORG_ID, Clock, Store
from crm_meetings.store.repositories import utc_now

__all__ = [
    "ActionContext",
    "ActionKind",
    "ActionResult",
    "Authorize",
    "QueuedMessage",
    "StepHook",
    "organizer_or_admin",
]


class ActionKind(StrEnum):
    SCHEDULE = "schedule"
    EDIT = "edit"
    CANCEL = "cancel"
    DELETE = "delete"
    SHARE = "share"
    ADD_TO_CALENDAR = "add_to_calendar"


#: Called at every step boundary as ``hook(action, boundary)``, e.g. ``("schedule",
#: "crm.create")`` once the CRM record exists and that progress is saved. Tests raise
#: from it to simulate a crash between two steps.
StepHook = Callable[[ActionKind, str], None]

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


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionContext:
    """Everything an action touches; the CLI, the web and tests each build one.

    ``sender`` is the verified organisation address mail goes out from (``None``: the
    organizer). ``lease`` is how long an attempt owns its idempotency key before a retry
    may take over (after a crash).
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
    lease: timedelta = timedelta(minutes=5)
    hook: StepHook = _no_hook

    def sender_for(self, meeting: Meeting) -> Sender:
        """The From of the meeting's mail: the configured address, else the organizer."""
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
