"""Replay refusal shared by every process on one store (table ``used_signatures``).

Several web workers may serve one PostgreSQL database; a per-process memory would let each
of them accept the same signed request once. :class:`StoredReplayGuard` inserts the
signature's digest with its expiry: the primary key lets exactly one insert win, even
when two processes race on the same signature, and the loser refuses the request. Rows
past their expiry are deleted by the next check (a signature that old is refused as stale
by its verifier anyway).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc

from crm_meetings.errors import UnauthenticatedError
from crm_meetings.store import Store
from crm_meetings.web.auth import FRESHNESS, REPLAYED, signature_digest
from crm_meetings.web.tables import UsedSignatureRow

__all__ = ["StoredReplayGuard"]


def _purge(now: datetime) -> sa.Delete:
    """Delete the expired rows no other transaction is deleting (PostgreSQL skips rows
    another check holds, so two purges never wait on each other; SQLite has one writer)."""
    expired = (
        sa.select(UsedSignatureRow.digest)
        .where(UsedSignatureRow.expires_at <= now)
        .with_for_update(skip_locked=True)
    )
    return sa.delete(UsedSignatureRow).where(UsedSignatureRow.digest.in_(expired))


class StoredReplayGuard:
    """Refuses a signature any process on ``store`` accepted before it went stale.

    A signature is kept until its verifier's ``until`` and at least ``window``.
    """

    def __init__(self, store: Store, window: timedelta = FRESHNESS) -> None:
        self._store = store
        self._window = window

    def check(self, signature: str, now: datetime, until: datetime | None = None) -> None:
        digest = signature_digest(signature)
        expires = max(until or now, now + self._window)
        with self._store.transaction() as uow:
            session = uow.session
            session.execute(_purge(now))
            try:
                with session.begin_nested():
                    session.add(UsedSignatureRow(digest=digest, expires_at=expires))
            except exc.IntegrityError:
                accepted = False
            else:
                accepted = True
        if not accepted:
            raise UnauthenticatedError(REPLAYED)
