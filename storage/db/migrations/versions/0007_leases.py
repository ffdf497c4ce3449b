"""camera leases, workers, published camera status, a covering timeline index

Revision ID: 0007
Revises: 0004b
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0004b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "camera_leases",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_us", sa.BigInteger(), nullable=False),
        sa.Column("acquired_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id"),
    )
    op.create_index("ix_camera_leases_worker", "camera_leases", ["worker_id"])
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("advertise_url", sa.Text(), nullable=False),
        sa.Column("started_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id"),
    )
    op.create_table(
        "camera_status",
        sa.Column("camera_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        sa.Column("bitrate_bps", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("camera_id", "stream"),
    )


    # A covering index for timelines: (start, end) of one camera's day come from the
    # index alone (tests/bench/index_scale.py measured the difference).
    op.create_index("ix_segments_timeline", "segments", ["camera_id", "stream", "start_us", "end_us"])


def downgrade() -> None:
    op.drop_index("ix_segments_timeline", table_name="segments")
    op.drop_table("camera_status")
    op.drop_table("workers")
    op.drop_index("ix_camera_leases_worker", table_name="camera_leases")
    op.drop_table("camera_leases")
