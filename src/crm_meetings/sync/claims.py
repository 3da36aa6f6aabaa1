"""Exactly-once runs and leases, in the database every worker shares.

- A **claim** is a row keyed by (job, run key), e.g. ("nightly-sync", "2026-11-23"):
  the first worker to insert it runs the job; every other worker sees the key taken and
  skips. It works the same on SQLite and PostgreSQL, and survives restarts.
- A **lease** is a row per name (e.g. ``sync:default:rep@x.com``) held by one holder
  until it expires or is released; a crashed holder's lease simply runs out, so a manual
  sync and the nightly sync never work on the same organizer at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.repositories import Repository
from crm_meetings.store.tables import ID, Base

__all__ = ["ClaimRepository", "JobClaimRow", "LeaseRepository", "LeaseRow"]


class JobClaimRow(Base):
    __tablename__ = "job_claims"

    job_id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    run_key: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(ID))
    claimed_at: Mapped[datetime]


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(ID))
    expires_at: Mapped[datetime]


class ClaimRepository(Repository):
    def claim(self, job_id: str, run_key: str, holder: str) -> bool:
        """True for the one caller that claimed (job_id, run_key) first."""
        try:
            with self.session.begin_nested():
                self.session.add(JobClaimRow(
                    job_id=job_id, run_key=run_key, holder=holder, claimed_at=self.clock()
                ))  # fmt: skip
        except exc.IntegrityError:
            return False
        return True

    def holder(self, job_id: str, run_key: str) -> str | None:
        row = self.session.get(JobClaimRow, (job_id, run_key))
        return row.holder if row else None


class LeaseRepository(Repository):
    def acquire(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease; False while another holder's lease is live."""
        now = self.clock()
        taken = self.session.execute(
            sa.update(LeaseRow)
            .where(
                LeaseRow.name == name,
                sa.or_(LeaseRow.holder == holder, LeaseRow.expires_at <= now),
            )
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount:  # type: ignore[attr-defined]
            return True
        try:
            with self.session.begin_nested():
                self.session.add(LeaseRow(name=name, holder=holder, expires_at=now + ttl))
        except exc.IntegrityError:
            return False
        return True

    def release(self, name: str, holder: str) -> None:
        self.session.execute(
            sa.delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder)
        )

    def holder(self, name: str) -> str | None:
        row = self.session.get(LeaseRow, name)
        if row is None or row.expires_at <= self.clock():
            return None
        return row.holder
