"""The web layer's tables: API keys (store migration 0006), used signatures (0007)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import Base

__all__ = ["ApiKeyRow", "UsedSignatureRow"]


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


class UsedSignatureRow(Base):
    """A signed request already accepted: the SHA-256 of its signature, until it expires.

    The primary key makes the first insert win: two processes given the same signature
    accept it once (:class:`crm_meetings.web.replay.StoredReplayGuard`).
    """

    __tablename__ = "used_signatures"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
