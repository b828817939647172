"""The SIEM forwarder's position, per destination, in the database (not a file), so
every gateway replica reads its lag and the forwarder needs no volume.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_forward_cursor",
        sa.Column("destination", sa.String(300), primary_key=True),
        sa.Column("next_index", sa.BigInteger, nullable=False),
        sa.Column("last_leaf_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("held_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_forward_cursor")
