"""What the contact map keeps by hand (everything else is derived from meetings and
sessions): company types and relationship partners, CRM accounts, saved filter tabs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_meetings.store.tables import EMAIL, ID, Base

__all__ = ["CompanyProfileRow", "CrmCompanyRow", "SavedFilterRow"]

_TYPES = "type IS NULL OR type IN ('client', 'referral_source', 'prospect')"


class CompanyProfileRow(Base):
    """A company's type and relationship partner, set by hand (they win over the CRM)."""

    __tablename__ = "company_profiles"
    __table_args__ = (sa.CheckConstraint(_TYPES, name="type"),)

    org_id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    domain: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    type: Mapped[str | None] = mapped_column(sa.String(32))
    partner: Mapped[str | None] = mapped_column(sa.String(EMAIL))
    updated_at: Mapped[datetime]


class CrmCompanyRow(Base):
    """An account/company as the CRM has it, by e-mail domain."""

    __tablename__ = "crm_companies"
    __table_args__ = (sa.CheckConstraint(_TYPES, name="type"),)

    org_id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    domain: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(ID))
    type: Mapped[str | None] = mapped_column(sa.String(32))
    updated_at: Mapped[datetime]


class SavedFilterRow(Base):
    """A user's named filter tab over companies."""

    __tablename__ = "saved_filters"
    __table_args__ = (
        sa.CheckConstraint(_TYPES, name="type"),
        sa.CheckConstraint("scope IN ('mine', 'firm')", name="scope"),
    )

    org_id: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    user_email: Mapped[str] = mapped_column(sa.String(EMAIL), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(ID), primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(16))
    type: Mapped[str | None] = mapped_column(sa.String(32))
    partner: Mapped[str | None] = mapped_column(sa.String(EMAIL))
