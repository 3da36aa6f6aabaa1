"""The web layer's tables (store migration 0006): API keys and org preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import Base

__all__ = ["ApiKeyRow", "OrgPreferenceRow"]


class ApiKeyRow(Base):
    """A server-to-server key: only its SHA-256 is kept; ``revoked_at`` switches it off."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.Index(None, "org_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.String(255))
    crm: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(255))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    actor_email: Mapped[str] = mapped_column(sa.String(320))
    created_by: Mapped[str] = mapped_column(sa.String(320))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


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
