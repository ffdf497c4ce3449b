"""Segments say where they came from: "live", or "device" (backfilled from a GB/T 28181 device)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=16), nullable=False, server_default="live"))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("origin")
