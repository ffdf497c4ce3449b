"""GB/T 28181: a device's own media transport (udp, tcp-passive, tcp-active; "" for the default)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gb_devices") as batch:
        batch.add_column(sa.Column("media_transport", sa.String(length=16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("gb_devices") as batch:
        batch.drop_column("media_transport")
