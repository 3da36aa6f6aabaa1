"""Actions on a meeting — one service layer for the CLI, the web and tests.

Every action is ``action(ctx, request) -> ActionResult``: ``ctx`` (:class:`ActionContext`)
bundles the store, the CRM connector, the conferencing providers (``provider``, where new
meetings are scheduled, and ``providers``, every configured one by name), the mail sender,
the clock, the id factory, the org and the acting user. Requests are frozen values checked on
construction; mutating ones carry an idempotency key.

Idempotency. A key is recorded per org (table ``action_requests``) with the action and a
fingerprint of the request. A repeat of a finished request returns the stored result
(``replayed=True``) and does nothing else; the same key with another request, another
action or another user is a :class:`~crm_meetings.errors.ConflictError`. While an attempt
runs it holds a lease on the key (``ctx.lease``): a concurrent double-click is refused, a
retry after a reported failure or after a crash (once the lease ran out) resumes from the
saved progress. Every attempt, replay and refusal after the claim writes an audit row
(``action_audit``: who, what, when, outcome).

Order and compensation. Remote calls come first, each recorded in the key's progress as
*started* before and *done* after it (one write carries one step's end and the next
step's start; the claim carries the first step's start, the commit the last step's end);
our store row, the outbox messages and the result are written last, in one transaction.
So an invitee is never told of anything that is not saved in the CRM and in our store,
and the outbox (not SMTP) carries the mail.

* schedule: provider create (join URL) → CRM create → commit (meeting row, REQUEST to
  every invitee). If the CRM *refused* the record (4xx, rate limit, validation), the
  provider meeting is deleted again and the key is free to retry from scratch. If the
  outcome is unknown (5xx, timeout, dropped connection) the provider meeting is kept so a
  CRM record that may exist never points to a missing one; the retry looks for our record
  by UID on the first related record before creating it again. Likewise a provider create
  whose outcome is unknown (timeout, dropped connection, crash) is looked for on retry
  (``find_created``: same subject and times, not used by a stored meeting) and adopted.
* edit: stale checks first (our version, then the CRM's modified time) → provider update
  → CRM update (the connector writes the fields the change names) → commit (REQUEST to
  kept and added invitees, CANCEL to removed ones, SEQUENCE bumped by ``revise``). A CRM
  refusal puts the provider back to the old values.
* cancel: CRM update (the status change; each connector marks the record cancelled as its
  CRM models it) → provider cancel → commit (CANCEL to every invitee). Forward only: a
  failure leaves the key pending and a retry finishes the cancellation. Cancelling a
  cancelled meeting does nothing and sends nothing.
* delete: CRM delete → provider delete (CRM first: a CRM record never points to a deleted
  provider meeting) → commit (status ``deleted`` as a tombstone, CANCEL to every invitee
  unless they already had one). Forward only, like cancel.
* share, add to calendar: read-only; the invitation text or the .ics bytes.

Whose provider. Edit, cancel and delete (their steps, the undo of an edit's provider
update, their retries and the sweeper's) act at the provider the meeting was scheduled on
(``Meeting.provider``, looked up in ``ctx.providers``), never at ``ctx.provider`` unless
that is the meeting's. When that provider is not configured any more: an edit that
changes what the provider holds (subject, times, time zone, description) is refused
before any change (:class:`~crm_meetings.errors.ConfigurationError` naming the provider);
one that changes only what the CRM and invitees hold goes ahead; cancel and delete still
change the CRM and tell every invitee, with a warning naming the provider meeting that
could not be removed and what to do. A retried schedule creates (or finds its lost
create) on the provider its first attempt started on.

Rotations. A schedule request naming a ``rotation`` is hosted by the member the rotation
picks (or the named organizer, who must be an available member); the member's count is
written in the commit's transaction, with the meeting row. Cancel and delete give the
count back in their commit, once (a cancelled meeting deleted later is not given back
twice). So a crash leaves either both or neither, and a repeat with the same key replays.

Pending requests. :func:`sweep` (for the worker) finishes every pending request whose
attempt is over, as its rep's retry would, and reports each outcome. A request's progress
keeps what its attempt acted with (the conferencing provider's name, the actor's profile,
the sender named), and the sweeper finishes it with the same: a request whose provider is
not configured any more stays pending, its outcome saying so.

Permissions. ``ctx.authorize`` (default :func:`organizer_or_admin`) says who may act on a
meeting; ``ctx.related`` (default :func:`related_records_visible`) says whether the
organizer may schedule on its related records: the CRM, asked with the org's
credentials, must say each record exists and is visible.

Known windows: providers offer no idempotency key, so a provider meeting made by a create
whose answer was lost is found again only by its subject and times (Zoom: the host's
scheduled meetings; GoTo: the organizer's upcoming ones); one that moved out of that
listing meanwhile is left behind, nobody pointing to it. A retry of an edit or cancel
re-sends the same update, which connectors apply idempotently. ``ctx.hook`` is called at
every step boundary, so tests can crash there.
"""

from crm_meetings.actions.context import (
    ActionContext,
    ActionKind,
    ActionResult,
    QueuedMessage,
    RecordLookup,
    organizer_or_admin,
    related_records_visible,
)
from crm_meetings.actions.ledger import ActionLedger, AuditEntry, LedgerEntry, LedgerStatus
from crm_meetings.actions.requests import (
    CancelRequest,
    DeleteRequest,
    EditRequest,
    MeetingRequest,
    ScheduleRequest,
    ViewRequest,
)
from crm_meetings.actions.service import (
    SweepOutcome,
    add_to_calendar,
    cancel,
    delete,
    edit,
    find_meeting,
    schedule,
    share,
    sweep,
)

__all__ = [
    "ActionContext",
    "ActionKind",
    "ActionLedger",
    "ActionResult",
    "AuditEntry",
    "CancelRequest",
    "DeleteRequest",
    "EditRequest",
    "LedgerEntry",
    "LedgerStatus",
    "MeetingRequest",
    "QueuedMessage",
    "RecordLookup",
    "ScheduleRequest",
    "SweepOutcome",
    "ViewRequest",
    "add_to_calendar",
    "cancel",
    "delete",
    "edit",
    "find_meeting",
    "organizer_or_admin",
    "related_records_visible",
    "schedule",
    "share",
    "sweep",
]
