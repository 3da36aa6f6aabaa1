"""Web: signatures already accepted, shared by every process on the store (replay guard).

Revision ID: 0007
Revises: 0006

The ORM model is ``crm_meetings.web.tables.UsedSignatureRow``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "used_signatures",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_used_signatures")),
    )
    op.create_index(op.f("ix_used_signatures_expires_at"), "used_signatures", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_used_signatures_expires_at"), table_name="used_signatures")
    op.drop_table("used_signatures")
