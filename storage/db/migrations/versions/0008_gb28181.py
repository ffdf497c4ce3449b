"""GB/T 28181: camera source and device columns, the gb_devices table

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cameras") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=False, server_default="rtsp"))
        batch.add_column(sa.Column("gb_device_id", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("gb_civil_code", sa.String(length=32), nullable=True))
        batch.create_index("ix_cameras_gb_device_id", ["gb_device_id"])
    op.create_table(
        "gb_devices",
        sa.Column("device_id", sa.String(length=20), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("added", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("source_host", sa.String(length=64), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.Column("registered_us", sa.BigInteger(), nullable=False),
        sa.Column("last_keepalive_us", sa.BigInteger(), nullable=False),
        sa.Column("keepalive_interval_s", sa.Float(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("manufacturer", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("firmware", sa.Text(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("status_json", sa.Text(), nullable=False),
        sa.Column("catalog_json", sa.Text(), nullable=False),
        sa.Column("last_invite_json", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )


def downgrade() -> None:
    op.drop_table("gb_devices")
    with op.batch_alter_table("cameras") as batch:
        batch.drop_index("ix_cameras_gb_device_id")
        batch.drop_column("gb_civil_code")
        batch.drop_column("gb_device_id")
        batch.drop_column("source")
