"""Admin choices kept per org (or for the whole deployment), e.g. the nightly sync time.

One row per (org, name) holding a small JSON value; the web admin page, the CLI and the
worker read and write them through :func:`get_preference` / :func:`set_preference`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import Base
from crm_meetings.store.unit_of_work import UnitOfWork

__all__ = [
    "DEPLOYMENT",
    "SYNC_SCHEDULE",
    "OrgPreferenceRow",
    "get_preference",
    "set_preference",
]

#: the "org" of choices that hold for the whole deployment (there is one nightly job)
DEPLOYMENT: Final = "*"
#: {"hour", "minute", "timezone"} of the nightly history sync
SYNC_SCHEDULE: Final = "sync_schedule"


class OrgPreferenceRow(Base):
    """One admin choice per (org, name), e.g. the hidden meeting record types."""

    __tablename__ = "org_preferences"
    __table_args__ = (sa.UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str] = mapped_column(sa.String(64))
    value: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(sa.String(320))


def get_preference(uow: UnitOfWork, org_id: str, name: str) -> dict[str, Any] | None:
    row = uow.session.scalars(
        sa.select(OrgPreferenceRow).where(
            OrgPreferenceRow.org_id == org_id, OrgPreferenceRow.name == name
        )
    ).one_or_none()
    return None if row is None else dict(row.value)


def set_preference(
    uow: UnitOfWork, org_id: str, name: str, value: dict[str, Any], *, by: str
) -> None:
    row = uow.session.scalars(
        sa.select(OrgPreferenceRow).where(
            OrgPreferenceRow.org_id == org_id, OrgPreferenceRow.name == name
        )
    ).one_or_none()
    if row is None:
        row = OrgPreferenceRow(org_id=org_id, name=name)
        uow.session.add(row)
    row.value = value
    row.updated_at = uow.clock()
    row.updated_by = by
    uow.flush()
