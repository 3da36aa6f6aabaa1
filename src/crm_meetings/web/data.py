"""Org-scoped reads and writes over the store for the web layer.

Every function takes the caller's ``org_id`` (from the verified context): a meeting of
another org is reported as not found, so its existence is not revealed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import sqlalchemy as sa

from crm_meetings.calendar.outbox import Outbox, OutboxStatus
from crm_meetings.calendar.outbox_table import OutboxMessageRow
from crm_meetings.connectors.base import RecordType
from crm_meetings.errors import NotFoundError
from crm_meetings.model import Meeting
from crm_meetings.store import UnitOfWork
from crm_meetings.store.preferences import (
    DEPLOYMENT,
    SYNC_SCHEDULE,
    get_preference,
    set_preference,
)
from crm_meetings.store.tables import MeetingRow
from crm_meetings.web.auth import generate_api_key, hash_api_key
from crm_meetings.web.tables import ApiKeyRow

__all__ = [
    "DEPLOYMENT",
    "HIDDEN_RECORD_TYPES",
    "SYNC_SCHEDULE",
    "create_api_key",
    "get_preference",
    "list_api_keys",
    "meeting_in_org",
    "outbox_for_org",
    "retry_outbox",
    "revoke_api_key",
    "set_preference",
    "stored_record_types",
]

#: the pseudo-org of deployment-wide preferences (the nightly job is one per deployment)
HIDDEN_RECORD_TYPES: Final = "hidden_record_types"


def meeting_in_org(uow: UnitOfWork, org_id: str, meeting_id: str) -> Meeting:
    """The meeting, if it belongs to ``org_id``; NotFoundError otherwise."""
    owner = uow.session.scalar(sa.select(MeetingRow.org_id).where(MeetingRow.id == meeting_id))
    if owner != org_id:
        raise NotFoundError(
            f"Meeting {meeting_id} does not exist",
            hint="Check the meeting id; the record page lists its meetings.",
        )
    return uow.meetings.get(meeting_id)


def _org_uids(uow: UnitOfWork, org_id: str) -> sa.Select[str]:
    return sa.select(MeetingRow.uid).where(MeetingRow.org_id == org_id)


def outbox_for_org(
    uow: UnitOfWork, org_id: str, *, status: OutboxStatus | None, limit: int
) -> list[OutboxMessageRow]:
    """The org's outbox messages (matched by meeting UID), newest first."""
    query = (
        sa.select(OutboxMessageRow)
        .where(OutboxMessageRow.meeting_uid.in_(_org_uids(uow, org_id)))
        .order_by(OutboxMessageRow.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(OutboxMessageRow.status == status.value)
    return list(uow.session.scalars(query))


def retry_outbox(uow: UnitOfWork, org_id: str, ids: Sequence[int] | None) -> int:
    """Queue the org's failed messages again (those in ``ids``, or all)."""
    query = sa.select(OutboxMessageRow.id).where(
        OutboxMessageRow.meeting_uid.in_(_org_uids(uow, org_id)),
        OutboxMessageRow.status == OutboxStatus.FAILED.value,
    )
    mine = set(uow.session.scalars(query))
    wanted = mine if ids is None else mine & set(ids)
    return Outbox.retry(uow, sorted(wanted)) if wanted else 0


def stored_record_types(uow: UnitOfWork, org_id: str) -> list[RecordType]:
    """The record types the org's stored meetings use (when no connector is at hand)."""
    names = uow.session.scalars(
        sa.select(MeetingRow.record_type)
        .where(MeetingRow.org_id == org_id, MeetingRow.record_type.is_not(None))
        .distinct()
        .order_by(MeetingRow.record_type)
    )
    return [RecordType(id=name, name=name.replace("_", " ")) for name in names if name]


def create_api_key(
    uow: UnitOfWork, org_id: str, *, crm: str, name: str, actor_email: str, by: str
) -> tuple[ApiKeyRow, str]:
    """A new key for ``org_id``: the row (hash only) and the key, to show once."""
    key = generate_api_key()
    row = ApiKeyRow(
        org_id=org_id,
        crm=crm,
        name=name,
        key_hash=hash_api_key(key),
        prefix=key[:12],
        actor_email=actor_email,
        created_by=by,
        created_at=uow.clock(),
    )
    uow.session.add(row)
    uow.flush()
    return row, key


def list_api_keys(uow: UnitOfWork, org_id: str) -> list[ApiKeyRow]:
    return list(
        uow.session.scalars(
            sa.select(ApiKeyRow).where(ApiKeyRow.org_id == org_id).order_by(ApiKeyRow.id)
        )
    )


def revoke_api_key(uow: UnitOfWork, org_id: str, key_id: int, *, at: datetime) -> ApiKeyRow:
    row = uow.session.get(ApiKeyRow, key_id)
    if row is None or row.org_id != org_id:
        raise NotFoundError(f"API key {key_id} does not exist", hint="List the org's keys.")
    if row.revoked_at is None:
        row.revoked_at = at
    return row
