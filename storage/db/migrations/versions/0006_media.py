"""media: timeline thumbnails, per-second motion levels, motion settings

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "thumbnails",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("t_us", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_thumbnails_camera_time", "thumbnails", ["camera_id", "stream", "t_us"], unique=True)
    op.create_table(
        "motion",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("levels", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", "stream", "start_s"),
    )
    op.create_table(
        "motion_settings",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id"),
    )


def downgrade() -> None:
    op.drop_table("motion_settings")
    op.drop_table("motion")
    op.drop_index("ix_thumbnails_camera_time", table_name="thumbnails")
    op.drop_table("thumbnails")
