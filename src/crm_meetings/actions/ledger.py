"""The idempotency ledger and the audit trail, as a store repository.

An action's key moves through ``pending`` (claimed; ``state`` holds its progress) to
``succeeded`` (``result`` holds what it returned). A pending key is *leased* to one
attempt until ``lease_until``: a concurrent repeat is refused, a retry after a crash
(once the lease ran out) or after a reported failure (the lease is released) resumes
from the saved progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, cast

import sqlalchemy as sa

from crm_meetings.actions.tables import ActionAuditRow, ActionRequestRow, MeetingConferencingRow
from crm_meetings.errors import ConflictError
from crm_meetings.store import Repository
from crm_meetings.store.statements import insert_ignoring, upsert

__all__ = ["ActionLedger", "AuditEntry", "LedgerEntry", "LedgerStatus"]


class LedgerStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    action: str
    fingerprint: str
    status: LedgerStatus
    meeting_id: str | None
    actor: str
    state: dict[str, Any]
    result: dict[str, Any] | None
    attempts: int
    lease_until: datetime | None
    last_error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    outcome: str
    meeting_id: str | None
    idempotency_key: str | None
    detail: dict[str, Any]


def _entry(row: sa.Row[Any]) -> LedgerEntry:
    return LedgerEntry(
        key=row.idempotency_key,
        action=row.action,
        fingerprint=row.fingerprint,
        status=LedgerStatus(row.status),
        meeting_id=row.meeting_id,
        actor=row.actor,
        state=dict(row.state),
        result=None if row.result is None else dict(row.result),
        attempts=row.attempts,
        lease_until=row.lease_until,
        last_error=None if row.last_error is None else dict(row.last_error),
    )


# Core statements on the tables, built once: every action runs four to six of them, and
# building and loading them through the ORM took as long as the rest of the action.
_REQUESTS: Final = cast(sa.Table, ActionRequestRow.__table__)
_AUDIT: Final = cast(sa.Table, ActionAuditRow.__table__)
_CONFERENCING: Final = cast(sa.Table, MeetingConferencingRow.__table__)
_R = _REQUESTS.c
# bound names of WHERE clauses differ from the columns a SET clause binds
_THE_REQUEST: Final = (
    _R.org_id == sa.bindparam("where_org"),
    _R.idempotency_key == sa.bindparam("where_key"),
)
_FIND: Final = sa.select(_REQUESTS).where(*_THE_REQUEST)
# a taken key inserts nothing and returns no row (rowcount says -1 on psycopg)
_CLAIM: Final = insert_ignoring(_REQUESTS, ["org_id", "idempotency_key"], returning=_R.id)
_UPDATE: Final = sa.update(_REQUESTS).where(*_THE_REQUEST)
_TAKE: Final = _UPDATE.where(
    _R.status == LedgerStatus.PENDING.value,
    sa.or_(_R.lease_until.is_(None), _R.lease_until <= sa.bindparam("now")),
).values(attempts=_R.attempts + 1)
_PENDING: Final = (
    sa.select(_REQUESTS)
    .where(_R.org_id == sa.bindparam("org_id"), _R.status == LedgerStatus.PENDING.value)
    .order_by(_R.created_at, _R.id)
)
_ADD_AUDIT: Final = sa.insert(_AUDIT)
_DIAL_IN: Final = sa.select(_CONFERENCING.c.dial_in).where(
    _CONFERENCING.c.meeting_id == sa.bindparam("meeting_id")
)
_SET_DIAL_IN: Final = upsert(_CONFERENCING, ["meeting_id"], update=["dial_in"])


def _key(org_id: str, key: str) -> dict[str, str]:
    return {"where_org": org_id, "where_key": key}


def _in_progress(key: str) -> ConflictError:
    return ConflictError(
        f"The request with idempotency key {key} is being processed right now",
        hint="Wait a moment, then repeat the request with the same key to get its result.",
    )


def _disappeared(key: str) -> ConflictError:
    """Only reachable if someone deleted the request's row under us."""
    return ConflictError(
        f"The request with idempotency key {key} disappeared",
        hint="Repeat the request with a new idempotency key.",
    )


class ActionLedger(Repository):
    """Idempotency records, audit entries and per-meeting conferencing details."""

    def find(self, org_id: str, key: str) -> LedgerEntry | None:
        row = self.session.execute(_FIND, _key(org_id, key)).first()
        return None if row is None else _entry(row)

    def claim(
        self,
        org_id: str,
        key: str,
        *,
        action: str,
        fingerprint: str,
        actor: str,
        meeting_id: str | None,
        state: dict[str, Any],
        lease_until: datetime,
    ) -> None:
        """Record a new pending request, leased to the caller until ``lease_until``."""
        now = self.clock()
        row = {
            "org_id": org_id,
            "idempotency_key": key,
            "action": action,
            "fingerprint": fingerprint,
            "status": LedgerStatus.PENDING.value,
            "meeting_id": meeting_id,
            "actor": actor,
            "state": state,
            "attempts": 1,
            "lease_until": lease_until,
            "created_at": now,
            "updated_at": now,
        }
        if self.session.execute(_CLAIM.on(self.session), row).first() is None:
            raise _in_progress(key)  # the key is taken: by an attempt still running

    def take(self, org_id: str, key: str, *, lease_until: datetime) -> None:
        """Lease a pending request whose lease was released or ran out to a new attempt."""
        now = self.clock()
        result = self.session.execute(
            _TAKE, {**_key(org_id, key), "now": now, "lease_until": lease_until, "updated_at": now}
        )
        if int(getattr(result, "rowcount", 0)) != 1:
            raise _in_progress(key)

    def progress(self, org_id: str, key: str, state: dict[str, Any]) -> None:
        """Save an attempt's progress (still leased): one UPDATE, no read."""
        self._update(org_id, key, state=state, updated_at=self.clock())

    def release(self, org_id: str, key: str, state: dict[str, Any], error: dict[str, Any]) -> None:
        """An attempt failed: save its progress and error, and free the key for a retry."""
        self._update(
            org_id, key, state=state, last_error=error, lease_until=None, updated_at=self.clock()
        )

    def complete(self, org_id: str, key: str, *, meeting_id: str, result: dict[str, Any]) -> None:
        """The request succeeded: keep its result for repeats (one UPDATE, no read)."""
        now = self.clock()
        self._update(
            org_id,
            key,
            status=LedgerStatus.SUCCEEDED.value,
            meeting_id=meeting_id,
            result=result,
            state={},
            lease_until=None,
            last_error=None,
            updated_at=now,
            completed_at=now,
        )

    def pending(self, org_id: str) -> list[LedgerEntry]:
        """Unfinished requests, oldest first (for an admin, or a sweeper)."""
        return [_entry(row) for row in self.session.execute(_PENDING, {"org_id": org_id})]

    # --- audit -------------------------------------------------------------------------

    def audit(
        self,
        org_id: str,
        *,
        actor: str,
        action: str,
        outcome: str,
        meeting_id: str | None,
        key: str | None,
        detail: dict[str, Any],
    ) -> None:
        self.session.execute(
            _ADD_AUDIT,
            {
                "org_id": org_id,
                "at": self.clock(),
                "actor": actor,
                "action": action,
                "outcome": outcome,
                "meeting_id": meeting_id,
                "idempotency_key": key,
                "detail": detail,
            },
        )

    def audit_trail(self, org_id: str, *, meeting_id: str | None = None) -> list[AuditEntry]:
        """Audit entries in the order they were written, optionally for one meeting."""
        query = sa.select(_AUDIT).where(_AUDIT.c.org_id == org_id)
        if meeting_id is not None:
            query = query.where(_AUDIT.c.meeting_id == meeting_id)
        return [
            AuditEntry(
                at=row.at,
                actor=row.actor,
                action=row.action,
                outcome=row.outcome,
                meeting_id=row.meeting_id,
                idempotency_key=row.idempotency_key,
                detail=dict(row.detail),
            )
            for row in self.session.execute(query.order_by(_AUDIT.c.id))
        ]

    # --- conferencing details ----------------------------------------------------------

    def set_dial_in(self, meeting_id: str, dial_in: str | None) -> None:
        self.session.execute(
            _SET_DIAL_IN.on(self.session), {"meeting_id": meeting_id, "dial_in": dial_in}
        )

    def dial_in(self, meeting_id: str) -> str | None:
        value: str | None = self.session.execute(_DIAL_IN, {"meeting_id": meeting_id}).scalar()
        return value

    # --- rows --------------------------------------------------------------------------

    def _update(self, org_id: str, key: str, **values: Any) -> None:
        result = self.session.execute(_UPDATE, {**_key(org_id, key), **values})
        if int(getattr(result, "rowcount", 0)) != 1:
            raise _disappeared(key)
