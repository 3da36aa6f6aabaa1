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
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from crm_meetings.actions.tables import ActionAuditRow, ActionRequestRow, MeetingConferencingRow
from crm_meetings.errors import ConflictError
from crm_meetings.store import Repository

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


def _entry(row: ActionRequestRow) -> LedgerEntry:
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
        row = self._row(org_id, key)
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
        row = ActionRequestRow(
            org_id=org_id,
            idempotency_key=key,
            action=action,
            fingerprint=fingerprint,
            status=LedgerStatus.PENDING.value,
            meeting_id=meeting_id,
            actor=actor,
            state=state,
            attempts=1,
            lease_until=lease_until,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except exc.IntegrityError as error:
            raise _in_progress(key) from error

    def take(self, org_id: str, key: str, *, lease_until: datetime) -> None:
        """Lease a pending request whose lease was released or ran out to a new attempt."""
        now = self.clock()
        table = ActionRequestRow
        result = self.session.execute(
            sa.update(table)
            .where(
                table.org_id == org_id,
                table.idempotency_key == key,
                table.status == LedgerStatus.PENDING.value,
                sa.or_(table.lease_until.is_(None), table.lease_until <= now),
            )
            .values(lease_until=lease_until, attempts=table.attempts + 1, updated_at=now)
        )
        if int(getattr(result, "rowcount", 0)) != 1:
            raise _in_progress(key)

    def progress(self, org_id: str, key: str, state: dict[str, Any]) -> None:
        """Save an attempt's progress (still leased): one UPDATE, no read."""
        self._update(org_id, key, state=state, updated_at=self.clock())

    def release(self, org_id: str, key: str, state: dict[str, Any], error: dict[str, Any]) -> None:
        """An attempt failed: save its progress and error, and free the key for a retry."""
        row = self._existing(org_id, key)
        row.state = state
        row.last_error = error
        row.lease_until = None
        row.updated_at = self.clock()

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
        query = (
            sa.select(ActionRequestRow)
            .where(
                ActionRequestRow.org_id == org_id,
                ActionRequestRow.status == LedgerStatus.PENDING.value,
            )
            .order_by(ActionRequestRow.created_at, ActionRequestRow.id)
        )
        return [_entry(row) for row in self.session.scalars(query)]

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
        self.session.add(
            ActionAuditRow(
                org_id=org_id,
                at=self.clock(),
                actor=actor,
                action=action,
                outcome=outcome,
                meeting_id=meeting_id,
                idempotency_key=key,
                detail=detail,
            )
        )

    def audit_trail(self, org_id: str, *, meeting_id: str | None = None) -> list[AuditEntry]:
        """Audit entries in the order they were written, optionally for one meeting."""
        query = sa.select(ActionAuditRow).where(ActionAuditRow.org_id == org_id)
        if meeting_id is not None:
            query = query.where(ActionAuditRow.meeting_id == meeting_id)
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
            for row in self.session.scalars(query.order_by(ActionAuditRow.id))
        ]

    # --- conferencing details ----------------------------------------------------------

    def set_dial_in(self, meeting_id: str, dial_in: str | None) -> None:
        row = self.session.get(MeetingConferencingRow, meeting_id)
        if row is None:
            self.session.add(MeetingConferencingRow(meeting_id=meeting_id, dial_in=dial_in))
        else:
            row.dial_in = dial_in

    def dial_in(self, meeting_id: str) -> str | None:
        row = self.session.get(MeetingConferencingRow, meeting_id)
        return None if row is None else row.dial_in

    # --- rows --------------------------------------------------------------------------

    def _row(self, org_id: str, key: str) -> ActionRequestRow | None:
        return self.session.scalars(
            sa.select(ActionRequestRow)
            .where(ActionRequestRow.org_id == org_id, ActionRequestRow.idempotency_key == key)
            .execution_options(populate_existing=True)
        ).one_or_none()

    def _update(self, org_id: str, key: str, **values: Any) -> None:
        table = ActionRequestRow
        result = self.session.execute(
            sa.update(table)
            .where(table.org_id == org_id, table.idempotency_key == key)
            .values(**values)
        )
        if int(getattr(result, "rowcount", 0)) != 1:
            raise _disappeared(key)

    def _existing(self, org_id: str, key: str) -> ActionRequestRow:
        row = self._row(org_id, key)
        if row is None:
            raise _disappeared(key)
        return row
