"""The actions: schedule, edit, cancel, delete (mutating) and share, add to calendar (views).

Every mutating action runs the same machine (:func:`_mutate`): look up the idempotency
key; decide (validate, authorise, compute the new meeting); claim the key; run the
remote steps in order, saving progress after each; commit the store, the outbox and the
result in one transaction. The order of steps per action and what is undone on failure
are described in :mod:`crm_meetings.actions`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from crm_meetings.actions.codec import meeting_from_json, meeting_to_json
from crm_meetings.actions.context import (
    CRM_CREATE_ANSWERED,
    ActionContext,
    ActionKind,
    ActionResult,
    QueuedMessage,
)
from crm_meetings.actions.ledger import ActionLedger, LedgerEntry, LedgerStatus
from crm_meetings.actions.requests import EditRequest, MeetingRequest, ScheduleRequest, ViewRequest
from crm_meetings.calendar.ics import add_to_calendar as calendar_file
from crm_meetings.calendar.ics import plan_edit, plan_new
from crm_meetings.calendar.imip import Sender, compose
from crm_meetings.calendar.invitation import invitation_text
from crm_meetings.calendar.outbox import Outbox
from crm_meetings.conferencing.base import ConferencingProvider, ProviderMeeting
from crm_meetings.errors import (
    AuthError,
    ConflictError,
    CrmMeetingsError,
    NotFoundError,
    ProviderNotConfiguredError,
    RateLimitedError,
    RemoteError,
    ValidationError,
)
from crm_meetings.model import Meeting, MeetingStatus, Person, diff, new_meeting
from crm_meetings.redaction import redact
from crm_meetings.routing.rotations import (
    Booking,
    BookingState,
    RotationRepository,
    explanation_to_json,
)
from crm_meetings.senders.crm_log import queue_logging
from crm_meetings.store import UnitOfWork

__all__ = [
    "SweepOutcome",
    "add_to_calendar",
    "cancel",
    "delete",
    "edit",
    "find_meeting",
    "schedule",
    "share",
    "sweep",
]

#: fields the conferencing provider holds a copy of
_PROVIDER_FIELDS: Final = frozenset({"subject", "start", "end", "timezone", "description"})


# --- progress of one request ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    """What the rep's attempt acted with, so that the sweeper finishes it alike: the
    conferencing provider's name (``None``: the request used none), the actor's profile
    and the sender its context named (``None``: the organizer; see
    :meth:`ActionContext.sender_for`)."""

    provider: str | None
    profile: str | None
    sender: Sender | None

    @classmethod
    def of(cls, ctx: ActionContext, progress: _Progress) -> _Origin:
        return cls(_acting_provider(ctx, progress), ctx.profile, ctx.sender)

    def to_json(self) -> dict[str, Any]:
        sender = self.sender
        return {
            "provider": self.provider,
            "profile": self.profile,
            "sender": None
            if sender is None
            else {"address": sender.address, "name": sender.name, "reply_to": sender.reply_to},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Origin:
        sender = data["sender"]
        return cls(
            provider=data["provider"],
            profile=data["profile"],
            sender=None
            if sender is None
            else Sender(sender["address"], sender["name"], sender["reply_to"]),
        )


def _acting_provider(ctx: ActionContext, progress: _Progress) -> str | None:
    """The provider an attempt acts on: for edit, cancel and delete the meeting's own
    (``None`` when it has no provider meeting, or its provider is not configured here:
    cancel and delete then go on without it); for schedule the one an earlier attempt
    started creating on, else ``ctx.provider``."""
    old = progress.old
    if old is not None:
        found = _provider_of(ctx, old)
        return None if found is None or not old.provider_meeting_id else found.name
    if progress.new.provider is not None:
        return progress.new.provider
    earlier = progress.origin
    if earlier is not None and "provider.create" in progress.attempted:
        return earlier.provider
    return None if ctx.provider is None else ctx.provider.name


def _provider_of(ctx: ActionContext, meeting: Meeting) -> ConferencingProvider | None:
    """The configured provider ``meeting`` was scheduled on (``None``: none, or not
    configured here). A meeting saved without its provider's name is on ``ctx.provider``."""
    if meeting.provider is None:
        return ctx.provider
    return ctx.provider_named(meeting.provider)


@dataclass(slots=True)
class _Progress:
    """A claimed request: the meeting before (``None`` for schedule) and after, and the
    steps done or started. Saved as the ledger's ``state`` after every step.

    ``origin`` is what the latest attempt acted with (``None`` in states saved before it
    was kept: the sweeper then finishes them with its own context, as it used to)."""

    old: Meeting | None
    new: Meeting
    done: list[str] = field(default_factory=list)
    attempted: list[str] = field(default_factory=list)
    dial_in: str | None = None
    warnings: list[str] = field(default_factory=list)
    rotation: str | None = None  # schedule: the rotation whose member hosts the meeting
    origin: _Origin | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "old": None if self.old is None else meeting_to_json(self.old),
            "new": meeting_to_json(self.new),
            "done": list(self.done),
            "attempted": list(self.attempted),
            "dial_in": self.dial_in,
            "warnings": list(self.warnings),
            "rotation": self.rotation,
            "origin": None if self.origin is None else self.origin.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Progress:
        old = data["old"]
        origin = data.get("origin")
        return cls(
            old=None if old is None else meeting_from_json(old),
            new=meeting_from_json(data["new"]),
            done=list(data["done"]),
            attempted=list(data["attempted"]),
            dial_in=data["dial_in"],
            warnings=list(data["warnings"]),
            rotation=data.get("rotation"),
            origin=None if origin is None else _Origin.from_json(origin),
        )


@dataclass(frozen=True, slots=True)
class _Step:
    """One remote call. ``run(progress, retrying)`` updates ``progress.new``; ``retrying``
    says an earlier attempt started this step and may have done it. ``undo`` reverts a
    done step when a later one certainly failed (``None``: the step is never undone)."""

    name: str
    run: Callable[[_Progress, bool], object]
    undo: Callable[[_Progress], object] | None = None


# --- the public actions -------------------------------------------------------------------


def schedule(ctx: ActionContext, request: ScheduleRequest) -> ActionResult:
    """Create the online meeting, the CRM record, our row, and queue the invitations."""
    return _mutate(ctx, ActionKind.SCHEDULE, request, lambda: _decide_schedule(ctx, request))


def edit(ctx: ActionContext, request: EditRequest) -> ActionResult:
    """Save and send update: the provider and the CRM get the change, invitees the mail."""
    return _mutate(
        ctx,
        ActionKind.EDIT,
        request,
        lambda: _decide_change(
            ctx, ActionKind.EDIT, request.meeting, request.changes(), request.expected_version
        ),
    )


def cancel(ctx: ActionContext, request: MeetingRequest) -> ActionResult:
    """Mark the CRM record cancelled, cancel the provider meeting, CANCEL every invitee."""
    changes = {"status": MeetingStatus.CANCELLED}
    return _mutate(
        ctx,
        ActionKind.CANCEL,
        request,
        lambda: _decide_change(ctx, ActionKind.CANCEL, request.meeting, changes, None),
    )


def delete(ctx: ActionContext, request: MeetingRequest) -> ActionResult:
    """Delete the CRM record and the provider meeting, CANCEL every invitee, keep a
    tombstone (status deleted) so late sync data is ignored."""
    changes = {"status": MeetingStatus.DELETED}
    return _mutate(
        ctx,
        ActionKind.DELETE,
        request,
        lambda: _decide_change(ctx, ActionKind.DELETE, request.meeting, changes, None),
    )


def share(ctx: ActionContext, request: ViewRequest) -> ActionResult:
    """The copy-invitation text (``result.text``)."""
    return _view(
        ctx,
        ActionKind.SHARE,
        request,
        lambda meeting, dial_in: dataclasses.replace(
            _result(ActionKind.SHARE, meeting), text=invitation_text(meeting, dial_in=dial_in)
        ),
    )


def add_to_calendar(ctx: ActionContext, request: ViewRequest) -> ActionResult:
    """The .ics file for the organizer's own calendar (``result.ics``)."""
    return _view(
        ctx,
        ActionKind.ADD_TO_CALENDAR,
        request,
        lambda meeting, _: dataclasses.replace(
            _result(ActionKind.ADD_TO_CALENDAR, meeting),
            ics=calendar_file(meeting, ctx.clock()),
        ),
    )


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """What :func:`sweep` did with one pending request (``error``: why it is still pending)."""

    key: str
    action: ActionKind
    completed: bool
    error: str | None = None


def sweep(
    ctx: ActionContext, providers: Mapping[str, ConferencingProvider] | None = None
) -> list[SweepOutcome]:
    """Finish the org's pending requests on ``ctx``'s CRM whose attempt is over.

    A request is pending after a reported failure (its lease released) or a crash (its
    lease ran out). The sweeper does what the rep's retry with the same key would do, as
    that rep: the remaining steps, then the commit; a step the vendor refuses undoes the
    done steps before it, as in an attempt (so a provider meeting is not left behind).
    Requests still leased, or for another CRM, are left alone. For the worker: call it
    periodically with one context per CRM connection.

    Each request is finished with what its attempt acted with: the conferencing provider
    of that name among ``providers`` (every provider the deployment configures, by name;
    ``ctx.provider`` and ``ctx.providers`` count as them too), the actor's profile and
    the sender it named. A request whose provider is not among them stays pending,
    untouched, and its outcome says so. A request saved before these were kept is
    finished with ``ctx``'s provider, profile and sender; its edit, cancel or delete, as
    any, acts at the meeting's own provider.
    """
    default = {} if ctx.provider is None else {ctx.provider.name: ctx.provider}
    available = _Merged(dict(providers or {}), default, ctx.providers)
    with _ledger(ctx) as ledger:
        entries = ledger.pending(ctx.org_id)
    outcomes: list[SweepOutcome] = []
    for entry in entries:
        now = ctx.clock()
        if (entry.lease_until is not None and entry.lease_until > now) or not entry.state:
            continue
        progress = _Progress.from_json(entry.state)
        if progress.new.crm is not ctx.connector.crm:
            continue
        kind = ActionKind(entry.action)
        acting = dataclasses.replace(ctx, actor=Person(entry.actor), providers=available)
        origin = progress.origin
        try:
            if origin is not None:
                if origin.provider is not None and origin.provider not in available:
                    error = _provider_missing(kind, entry.key, origin.provider, available)
                    outcomes.append(SweepOutcome(entry.key, kind, False, error))
                    continue
                acting = dataclasses.replace(
                    acting,
                    provider=None if origin.provider is None else available[origin.provider],
                    profile=origin.profile,
                    sender=origin.sender,
                )
            with _ledger(ctx) as ledger:
                ledger.take(ctx.org_id, entry.key, lease_until=now + ctx.lease)
            _advance(acting, kind, entry.key, progress, earlier=frozenset(progress.attempted))
        except Exception as error:  # reported per request; the others still run
            outcomes.append(SweepOutcome(entry.key, kind, False, _describe(error)))
        else:
            outcomes.append(SweepOutcome(entry.key, kind, True))
    return outcomes


class _Merged(Mapping[str, ConferencingProvider]):
    """Several mappings of providers by name as one, the first holding a name winning;
    a lazy one (e.g. :meth:`crm_meetings.clients.Clients.providers_by_name`) builds a
    provider only when it is looked up."""

    def __init__(self, *maps: Mapping[str, ConferencingProvider]) -> None:
        self._maps = maps

    def __getitem__(self, name: str) -> ConferencingProvider:
        for found in self._maps:
            if name in found:
                return found[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for found in self._maps for name in found))

    def __len__(self) -> int:
        return len(set(self))


def _provider_missing(
    kind: ActionKind, key: str, name: str, available: Mapping[str, ConferencingProvider]
) -> str:
    configured = ", ".join(sorted(available)) or "none"
    return (
        f"The {kind.value} request with idempotency key {key} was started on conferencing "
        f"provider {name!r}, which is not configured here (configured: {configured}); it "
        f"stays pending and nothing was done on another provider. Enable [{name}] again "
        "(enabled = true and its credentials) so that the worker finishes it there."
    )


def find_meeting(ctx: ActionContext, meeting: str) -> Meeting:
    """A meeting of ``ctx``'s org by our id or by its record id in ``ctx``'s CRM."""
    with ctx.store.transaction() as uow:
        return _locate(uow, ctx, meeting)


# --- deciding -----------------------------------------------------------------------------


def _result(kind: ActionKind, meeting: Meeting, *warnings: str) -> ActionResult:
    return ActionResult(action=kind, meeting=meeting, warnings=warnings)


def _decide_schedule(ctx: ActionContext, request: ScheduleRequest) -> _Progress:
    now = ctx.clock()
    organizer = request.organizer or ctx.actor
    rotation: str | None = None
    if request.rotation is not None:
        rotation, organizer = _rotation_host(ctx, request)
    meeting = new_meeting(
        crm=ctx.connector.crm,
        subject=request.subject,
        start=request.start,
        end=request.end,
        timezone=request.timezone,
        organizer=organizer,
        now=now,
        id_factory=ctx.id_factory,
        uid_domain=ctx.uid_domain,
        invitees=request.invitees,
        related=request.related,
        description=request.description,
        notes=request.notes,
        location=request.location,
        record_type=request.record_type,
    )
    if meeting.end <= now:
        raise ValidationError(
            "end", "is in the past", hint="Schedule a meeting that ends after now."
        )
    ctx.authorize(ctx, meeting, ActionKind.SCHEDULE)
    ctx.related(ctx, meeting, ActionKind.SCHEDULE)
    return _Progress(old=None, new=meeting, rotation=rotation)


def _rotation_host(ctx: ActionContext, request: ScheduleRequest) -> tuple[str, Person]:
    """The rotation's id and the member who hosts: the request's organizer, who must be an
    available member, or the rotation's pick (the count is written at the commit)."""
    assert request.rotation is not None
    with ctx.store.transaction() as uow:
        rotations = uow.repository(RotationRepository)
        found = rotations.get(request.rotation, org_id=ctx.org_id)
        if request.organizer is not None:
            member = found.member(request.organizer.email)
            if not member.available:
                raise ConflictError(
                    f"{member.email} is marked unavailable in rotation {found.name!r}",
                    hint="Book another member, or let the rotation pick.",
                )
            return found.id, request.organizer
        explanation = rotations.suggest(found.id, ctx.clock(), zone=request.timezone)
    if explanation.chosen is None:
        raise ConflictError(
            f"Nobody in rotation {found.name!r} can take a meeting now",
            hint="Toggle a member back to available, raise a daily cap, or pick a member by hand.",
        )
    return found.id, Person(explanation.chosen)


def _decide_change(
    ctx: ActionContext,
    kind: ActionKind,
    ref: str,
    changes: Mapping[str, Any],
    expected_version: int | None,
) -> _Progress | ActionResult:
    meeting = find_meeting(ctx, ref)
    ctx.authorize(ctx, meeting, kind)
    if meeting.status is MeetingStatus.DELETED:
        if kind is ActionKind.DELETE:
            return _result(kind, meeting, "The meeting was already deleted.")
        raise ConflictError(
            f"Meeting {meeting.id} ({meeting.subject!r}) was deleted",
            hint="A deleted meeting cannot be changed; schedule a new one.",
        )
    if meeting.status is MeetingStatus.CANCELLED:
        if kind is ActionKind.CANCEL:
            return _result(kind, meeting, "The meeting was already cancelled.")
        if kind is ActionKind.EDIT:
            raise ConflictError(
                f"Meeting {meeting.id} ({meeting.subject!r}) is cancelled",
                hint="A cancelled meeting cannot be edited; schedule a new one.",
            )
    if expected_version is not None and meeting.version != expected_version:
        raise ConflictError(
            f"Meeting {meeting.id} ({meeting.subject!r}) changed since you loaded it: it is at "
            f"version {meeting.version}, your edit started from version {expected_version}",
            hint="Reload the meeting, apply your edit again, then save.",
        )
    if kind is ActionKind.EDIT:
        _check_crm_unchanged(ctx, meeting)
    new, change = meeting.revise(at=ctx.clock(), **changes)
    if not change:
        return _result(kind, meeting, "Nothing changed.")
    if kind is ActionKind.EDIT and _needs_provider(ctx, meeting, new):
        raise _edit_unconfigured(ctx, meeting)
    return _Progress(old=meeting, new=new)


def _needs_provider(ctx: ActionContext, old: Meeting, new: Meeting) -> bool:
    """Whether an edit must change the provider meeting but its provider is not configured."""
    return (
        bool(old.provider_meeting_id)
        and bool(diff(old, new).changed & _PROVIDER_FIELDS)
        and _provider_of(ctx, old) is None
    )


def _configured(ctx: ActionContext) -> str:
    return ", ".join(ctx.provider_names()) or "none"


def _edit_unconfigured(ctx: ActionContext, meeting: Meeting) -> ProviderNotConfiguredError:
    """Refuses an edit of what a provider no longer configured holds (before any change)."""
    name = meeting.provider
    return ProviderNotConfiguredError(
        f"Meeting {meeting.id} ({meeting.subject!r}) was scheduled on conferencing provider "
        f"{name!r} (meeting {meeting.provider_meeting_id}), which is not configured here "
        f"(configured: {_configured(ctx)}); nothing was changed, so its subject, times and "
        "description stay as they are everywhere.",
        key=f"{name}.enabled",
        hint=f"Enable [{name}] again (enabled = true and its credentials) and repeat the "
        "edit; or cancel the meeting and schedule a new one.",
    )


def _unconfigured_warning(ctx: ActionContext, kind: ActionKind, meeting: Meeting) -> str:
    """What a cancel or delete says when the meeting's provider is not configured."""
    done = "cancelled" if kind is ActionKind.CANCEL else "deleted"
    return (
        f"The {meeting.provider} meeting {meeting.provider_meeting_id} could not be {done}: "
        f"conferencing provider {meeting.provider!r} is not configured here (configured: "
        f"{_configured(ctx)}). The CRM record is {done} and every invitee is told, but the "
        f"room may still be open: delete meeting {meeting.provider_meeting_id} in "
        f"{meeting.provider}'s own web page (or enable [{meeting.provider}] again and "
        "delete it there)."
    )


def _check_crm_unchanged(ctx: ActionContext, meeting: Meeting) -> None:
    """An edit made in the CRM since our copy was saved is a conflict, not overwritten."""
    if meeting.crm_record_id is None or meeting.crm_modified_at is None:
        return
    remote = ctx.connector.get(meeting.crm_record_id).crm_modified_at
    if remote is not None and remote > meeting.crm_modified_at:
        raise ConflictError(
            f"{meeting.crm} record {meeting.crm_record_id} was changed in the CRM at "
            f"{remote.isoformat()}, after crm-meetings last saved it",
            hint="Sync the meeting (or reload it from the CRM), then apply your edit again.",
        )


def _locate(uow: UnitOfWork, ctx: ActionContext, ref: str) -> Meeting:
    found = uow.meetings.find_by_reference(ctx.connector.crm, ref, org_id=ctx.org_id)
    if found is not None:
        return found
    raise NotFoundError(
        f"No meeting {ref} (by id, or by {ctx.connector.crm} record id) in this organisation",
        hint="Check the id; `crm-meetings meeting show` lists what is stored.",
    )


# --- the steps ----------------------------------------------------------------------------


def _steps(ctx: ActionContext, kind: ActionKind, progress: _Progress) -> list[_Step]:
    """The remote calls of ``kind``, in order (see the package docstring for why).

    Schedule creates on the provider the request's attempts act with (``ctx.provider``
    unless an earlier attempt started creating elsewhere); edit, cancel and delete act at
    the meeting's own provider (:func:`_provider_of`), never at the default one."""
    old = progress.old
    if old is None:
        return _schedule_steps(ctx, progress)
    pid = old.provider_meeting_id
    record = old.crm_record_id
    provider = _provider_of(ctx, old)
    steps: list[_Step] = []
    if kind is ActionKind.EDIT:
        if pid and diff(old, progress.new).changed & _PROVIDER_FIELDS:
            if provider is None:  # refused before any change (decided, or now on a retry)
                steps.append(_Step("provider.update", _refuse(_edit_unconfigured(ctx, old))))
            else:
                update = provider.update_meeting
                steps.append(
                    _Step(
                        "provider.update",
                        lambda p, _retrying: update(pid, p.new),
                        lambda _p: update(pid, old),
                    )
                )
        if record:
            steps.append(_Step("crm.update", _crm_update(ctx)))
    elif kind is ActionKind.CANCEL:
        if record:
            steps.append(_Step("crm.update", _crm_update(ctx)))
        if pid:
            steps.append(_provider_end(ctx, kind, old, provider, "provider.cancel"))
    elif kind is ActionKind.DELETE:
        if record:
            steps.append(_Step("crm.delete", lambda _p, _r: ctx.connector.delete(record)))
        if pid:
            steps.append(_provider_end(ctx, kind, old, provider, "provider.delete"))
    return steps


def _schedule_steps(ctx: ActionContext, progress: _Progress) -> list[_Step]:
    origin = progress.origin
    if origin is None:  # a state saved before origins were kept: ctx's provider
        provider, name = ctx.provider, None
    else:
        name = origin.provider
        provider = ctx.provider_named(name)
    steps: list[_Step] = []
    if provider is not None:
        create, remove = _provider_create(ctx, provider), _provider_remove(provider)
        steps.append(_Step("provider.create", create, remove))
    elif name is not None:  # an earlier attempt created there; it is not configured now
        refusal = ProviderNotConfiguredError(
            f"This schedule request was started on conferencing provider {name!r}, which "
            f"is not configured here (configured: {_configured(ctx)}); nothing was done "
            "on another provider.",
            key=f"{name}.enabled",
            hint=f"Enable [{name}] again (enabled = true and its credentials) and repeat "
            "the request.",
        )
        steps.append(_Step("provider.create", _refuse(refusal)))
    steps.append(_Step("crm.create", _crm_create(ctx)))
    return steps


def _refuse(error: CrmMeetingsError) -> Callable[[_Progress, bool], None]:
    def run(progress: _Progress, retrying: bool) -> None:
        raise error

    return run


def _provider_end(
    ctx: ActionContext,
    kind: ActionKind,
    old: Meeting,
    provider: ConferencingProvider | None,
    name: str,
) -> _Step:
    """Cancel or delete the provider meeting at its own provider; without that provider,
    a step that only notes the warning (the CRM and the invitees still learn of it)."""
    pid = str(old.provider_meeting_id)
    if provider is not None:
        end = provider.cancel_meeting if kind is ActionKind.CANCEL else provider.delete_meeting
        return _Step(name, _gone_ok(end, pid))
    warning = _unconfigured_warning(ctx, kind, old)

    def note(progress: _Progress, retrying: bool) -> None:
        if warning not in progress.warnings:
            progress.warnings.append(warning)

    return _Step("provider.unconfigured", note)


def _dial_in(answer: ProviderMeeting) -> str | None:
    return "\n".join(line.strip() for line in answer.dial_in if line.strip()) or None


def _provider_create(
    ctx: ActionContext, provider: ConferencingProvider
) -> Callable[[_Progress, bool], None]:
    def run(progress: _Progress, retrying: bool) -> None:
        answer = _find_at_provider(ctx, provider, progress.new) if retrying else None
        if answer is None:
            answer = provider.create_meeting(progress.new)
        progress.new = dataclasses.replace(
            progress.new,
            provider=provider.name,
            provider_meeting_id=answer.id,
            join_url=answer.join_url,
        )
        progress.dial_in = _dial_in(answer)

    return run


def _find_at_provider(
    ctx: ActionContext, provider: ConferencingProvider, meeting: Meeting
) -> ProviderMeeting | None:
    """The provider meeting an interrupted create may have made: one with the meeting's
    subject and times that no stored meeting of the org uses."""
    for found in provider.find_created(meeting):
        with ctx.store.transaction() as uow:
            users = uow.meetings.find_by_provider_meeting(
                provider.name, found.id, org_id=ctx.org_id
            )
        if not users:
            return found
    return None


def _provider_remove(provider: ConferencingProvider) -> Callable[[_Progress], None]:
    def undo(progress: _Progress) -> None:
        if progress.new.provider_meeting_id:
            _gone_ok(provider.delete_meeting, progress.new.provider_meeting_id)(progress, False)
        progress.new = dataclasses.replace(
            progress.new, provider=None, provider_meeting_id=None, join_url=None
        )
        progress.dial_in = None

    return undo


def _gone_ok(call: Callable[[str], object], pid: str) -> Callable[[_Progress, bool], None]:
    """Call ``call(pid)``; a provider meeting already gone counts as done."""

    def run(progress: _Progress, retrying: bool) -> None:
        try:
            call(pid)
        except NotFoundError:
            return

    return run


def _crm_create(ctx: ActionContext) -> Callable[[_Progress, bool], None]:
    def run(progress: _Progress, retrying: bool) -> None:
        meeting = progress.new
        created = _find_in_crm(ctx, meeting) if retrying else None
        if created is None:
            created = ctx.connector.create(meeting)
        ctx.hook(ActionKind.SCHEDULE, CRM_CREATE_ANSWERED)  # the record exists, unsaved yet
        progress.new = dataclasses.replace(
            meeting, crm_record_id=created.crm_record_id, crm_modified_at=created.crm_modified_at
        )

    return run


def _find_in_crm(ctx: ActionContext, meeting: Meeting) -> Meeting | None:
    """The record an interrupted create may have made, found by the meeting's UID (one
    consistent read, whether or not the meeting has related records)."""
    found = ctx.connector.find_by_uid(meeting.uid)
    if found is None or found.uid != meeting.uid or not found.crm_record_id:
        return None
    return found


def _crm_update(ctx: ActionContext) -> Callable[[_Progress, bool], None]:
    def run(progress: _Progress, retrying: bool) -> None:
        assert progress.old is not None
        updated = ctx.connector.update(progress.new, diff(progress.old, progress.new))
        progress.new = dataclasses.replace(progress.new, crm_modified_at=updated.crm_modified_at)

    return run


# --- running ------------------------------------------------------------------------------


Request = ScheduleRequest | EditRequest | MeetingRequest


def _mutate(
    ctx: ActionContext,
    kind: ActionKind,
    request: Request,
    decide: Callable[[], _Progress | ActionResult],
) -> ActionResult:
    key = request.idempotency_key
    fingerprint = request.fingerprint()
    with _ledger(ctx) as ledger:
        entry = ledger.find(ctx.org_id, key)
        if entry is not None:
            _same_request(ctx, entry, kind, fingerprint)
            if entry.status is LedgerStatus.SUCCEEDED:
                assert entry.result is not None
                replay = ActionResult.from_json(entry.result).as_replay()
                _audit(ledger, ctx, kind, "replayed", replay.meeting.id, key, {})
                return replay
            ledger.take(ctx.org_id, key, lease_until=ctx.clock() + ctx.lease)
    if entry is not None:
        resumed = _Progress.from_json(entry.state)
        # this retry acts with its own context, on the provider the request acts at
        resumed.origin = _Origin.of(ctx, resumed)
        return _advance(ctx, kind, key, resumed, earlier=frozenset(resumed.attempted))
    decided = decide()
    if isinstance(decided, _Progress):
        decided.origin = _Origin.of(ctx, decided)
        # the first remote step is recorded as started by the claim itself
        first = _steps(ctx, kind, decided)[:1]
        decided.attempted.extend(step.name for step in first)
    with _ledger(ctx) as ledger:
        meeting = decided.meeting if isinstance(decided, ActionResult) else decided.new
        ledger.claim(
            ctx.org_id,
            key,
            action=kind.value,
            fingerprint=fingerprint,
            actor=ctx.actor.email,
            meeting_id=meeting.id,
            state={} if isinstance(decided, ActionResult) else decided.to_json(),
            lease_until=ctx.clock() + ctx.lease,
        )
        if isinstance(decided, ActionResult):  # nothing to do: remember that answer
            ledger.complete(ctx.org_id, key, meeting_id=meeting.id, result=decided.to_json())
            _audit(
                ledger,
                ctx,
                kind,
                "unchanged",
                meeting.id,
                key,
                {"warnings": list(decided.warnings)},
            )
            return decided
    return _advance(ctx, kind, key, decided, earlier=frozenset())


def _same_request(
    ctx: ActionContext, entry: LedgerEntry, kind: ActionKind, fingerprint: str
) -> None:
    same = (entry.action, entry.fingerprint, entry.actor)
    if same == (kind.value, fingerprint, ctx.actor.email):
        return
    raise ConflictError(
        f"Idempotency key {entry.key} was already used for another request "
        f"({entry.action} by {entry.actor})",
        hint="Use a new idempotency key for a new request.",
    )


def _advance(
    ctx: ActionContext,
    kind: ActionKind,
    key: str,
    progress: _Progress,
    *,
    earlier: frozenset[str],
) -> ActionResult:
    """Run the steps not yet done, then commit; on failure undo or keep for a retry.

    ``earlier``: the steps an earlier attempt started (each is run as a retry: it may
    have been done). A step is recorded as started before it runs and as done after it,
    and each write carries both the end of one step and the start of the next; the last
    step's end is written by the commit (a crash before it leaves that step started, and
    the retry runs it as a retry, as after a crash inside it).
    """
    ctx.hook(kind, "claimed")
    steps = _steps(ctx, kind, progress)
    todo = [step for step in steps if step.name not in progress.done]
    current: _Step | None = None
    try:
        for index, step in enumerate(todo):
            if step.name not in progress.attempted:  # only the first step of a resumed attempt
                progress.attempted.append(step.name)
                _save(ctx, key, progress)
            current = step
            step.run(progress, step.name in earlier)
            current = None
            progress.done.append(step.name)
            following = todo[index + 1].name if index + 1 < len(todo) else None
            if following is not None:
                if following not in progress.attempted:
                    progress.attempted.append(following)
                _save(ctx, key, progress)
            ctx.hook(kind, step.name)
        ctx.hook(kind, "commit")
        with ctx.store.transaction() as uow:
            return _commit(uow, ctx, kind, key, progress)
    except Exception as error:
        if current is not None and _certainly_failed(error):
            progress.attempted.remove(current.name)
            _undo(steps, progress)
        _release(ctx, kind, key, progress, error)
        raise


def _certainly_failed(error: Exception) -> bool:
    """Whether a failed remote call certainly changed nothing: the vendor refused it.

    A 5xx, a timeout or a dropped connection may have been applied; only a refusal
    (4xx, a rate limit, our own validation) allows undoing the steps before it.
    """
    if isinstance(error, RateLimitedError | AuthError):
        return True
    if isinstance(error, RemoteError):
        return error.status is not None and 400 <= error.status < 500 and error.status != 408
    return isinstance(error, CrmMeetingsError)


def _undo(steps: Sequence[_Step], progress: _Progress) -> None:
    """Undo the done steps, newest first; a failed undo leaves its step done (a retry
    reuses it) and a warning."""
    for step in reversed(steps):
        if step.name not in progress.done or step.undo is None:
            continue
        try:
            step.undo(progress)
        except Exception as error:  # the rep gets the original error; the undo is noted
            progress.warnings.append(f"could not undo {step.name}: {_describe(error)}")
            continue
        progress.done.remove(step.name)
        progress.attempted.remove(step.name)


def _commit(
    uow: UnitOfWork, ctx: ActionContext, kind: ActionKind, key: str, progress: _Progress
) -> ActionResult:
    """Our row, the queued mail and the idempotent result: one transaction."""
    old = progress.old
    ledger = uow.repository(ActionLedger)
    if old is None:
        meeting = uow.meetings.add(progress.new, org_id=ctx.org_id)
        ledger.set_dial_in(meeting.id, progress.dial_in)
        plan = plan_new(meeting)
        dial_in = progress.dial_in
    else:
        meeting = uow.meetings.save(progress.new, expected_version=old.version)
        plan = plan_edit(old, meeting, diff(old, meeting))
        dial_in = ledger.dial_in(meeting.id) if plan else None
    sender = ctx.sender_for(meeting, uow)
    mails = compose(meeting, plan, sender=sender, now=ctx.clock(), dial_in=dial_in)
    queued = Outbox.enqueue_many(uow, mails)
    messages = tuple(
        QueuedMessage.of(mail, new=new) for mail, new in zip(mails, queued, strict=True)
    )
    if sender.address != meeting.organizer.email:  # the CRM does not capture this mailbox
        queue_logging(uow, meeting, [m for m, new in zip(mails, queued, strict=True) if new],
                      org_id=ctx.org_id)  # fmt: skip
    done = (*progress.done, "store.add" if old is None else "store.save")
    booking = _count_in_rotation(uow, kind, progress, meeting, ctx.clock())
    ctx.hook(kind, "store.rotation")  # inside the transaction: a crash here commits nothing
    if booking is not None:
        done = (*done, "rotation.book" if kind is ActionKind.SCHEDULE else "rotation.unbook")
    result = ActionResult(
        action=kind,
        meeting=meeting,
        done=(*done, "mail.queue") if messages else done,
        messages=messages,
        warnings=tuple(progress.warnings),
        extra={} if booking is None else {"rotation_booking": _booking_json(booking)},
    )
    ledger.complete(ctx.org_id, key, meeting_id=meeting.id, result=result.to_json())
    _audit(ledger, ctx, kind, "succeeded", meeting.id, key, {"done": list(result.done)})
    return result


def _count_in_rotation(
    uow: UnitOfWork, kind: ActionKind, progress: _Progress, meeting: Meeting, at: datetime
) -> Booking | None:
    """The rotation's side of the commit, in its transaction: a schedule through a rotation
    counts the host; a cancel or delete of a meeting booked through one gives the count
    back, once (see :mod:`crm_meetings.routing.rotation`: cancelling gives it back too).

    The meeting exists in the CRM by now: if its host left the rotation (or the rotation
    was removed) since the pick, the meeting is kept, not counted, and a warning says so.
    """
    rotations = uow.repository(RotationRepository)
    if kind is ActionKind.SCHEDULE and progress.rotation is not None:
        try:
            return rotations.book(
                progress.rotation,
                meeting.id,
                at,
                member=meeting.organizer.email,
                zone=meeting.timezone,
            )
        except NotFoundError as error:
            progress.warnings.append(f"not counted in rotation {progress.rotation}: {error}")
            return None
    if kind in (ActionKind.CANCEL, ActionKind.DELETE):
        return rotations.end_booking(meeting.id, BookingState(meeting.status.value))
    return None


def _booking_json(booking: Booking) -> dict[str, Any]:
    return {
        "rotation": booking.rotation_id,
        "member": booking.member,
        "suggested": booking.suggested,
        "state": booking.state.value,
        "explanation": explanation_to_json(booking.explanation),
    }


def _release(
    ctx: ActionContext, kind: ActionKind, key: str, progress: _Progress, error: Exception
) -> None:
    """Save the failed attempt's progress and error; free the key for a retry."""
    described = (
        error.to_dict()
        if isinstance(error, CrmMeetingsError)
        else {
            "code": "unexpected",
            "message": _describe(error),
        }
    )
    try:
        with _ledger(ctx) as ledger:
            ledger.release(ctx.org_id, key, progress.to_json(), described)
            detail = {"error": described, "done": list(progress.done)}
            _audit(ledger, ctx, kind, "failed", progress.new.id, key, detail)
    except Exception as store_error:  # the lease runs out instead; report the first error
        error.add_note(f"recording the failure failed too: {_describe(store_error)}")
    if isinstance(error, CrmMeetingsError):
        pending = bool(progress.done or progress.attempted)
        what = "finish it" if pending else "try again"
        error.hint = f"{error.hint} Then repeat the request with idempotency key {key} to {what}."


def _describe(error: BaseException) -> str:
    return redact(f"{type(error).__name__}: {error}")


@contextmanager
def _ledger(ctx: ActionContext) -> Iterator[ActionLedger]:
    with ctx.store.transaction() as uow:
        yield uow.repository(ActionLedger)


def _save(ctx: ActionContext, key: str, progress: _Progress) -> None:
    with _ledger(ctx) as ledger:
        ledger.progress(ctx.org_id, key, progress.to_json())


def _audit(
    ledger: ActionLedger,
    ctx: ActionContext,
    kind: ActionKind,
    outcome: str,
    meeting_id: str | None,
    key: str | None,
    detail: dict[str, Any],
) -> None:
    ledger.audit(
        ctx.org_id,
        actor=ctx.actor.email,
        action=kind.value,
        outcome=outcome,
        meeting_id=meeting_id,
        key=key,
        detail=detail,
    )


def _view(
    ctx: ActionContext,
    kind: ActionKind,
    request: ViewRequest,
    render: Callable[[Meeting, str | None], ActionResult],
) -> ActionResult:
    with ctx.store.transaction() as uow:
        meeting = _locate(uow, ctx, request.meeting)
        ctx.authorize(ctx, meeting, kind)
        if meeting.status is not MeetingStatus.SCHEDULED:
            raise ConflictError(
                f"Meeting {meeting.id} ({meeting.subject!r}) is {meeting.status}",
                hint="Only a scheduled meeting has an invitation to share or add to a calendar.",
            )
        ledger = uow.repository(ActionLedger)
        result = render(meeting, ledger.dial_in(meeting.id))
        _audit(ledger, ctx, kind, "succeeded", meeting.id, None, {})
        return result
