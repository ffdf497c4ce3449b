"""sign-in sessions (sign-out, refresh rotation), API key expiry, signed audit checkpoints

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Keys made before keys expired: one year from the migration (µs), so none lives for ever.
_YEAR_US = 365 * 24 * 3600 * 1_000_000


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("refresh_nonce", sa.String(length=32), nullable=False),
        sa.Column("revoked_us", sa.BigInteger(), nullable=True),
        sa.Column("revoked_why", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auth_sessions_user", "auth_sessions", ["user"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_us", sa.BigInteger(), nullable=True))
    op.execute(f"UPDATE api_keys SET expires_us = created_us + {_YEAR_US} WHERE expires_us IS NULL")
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("audit_id", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_us")
    op.drop_index("ix_auth_sessions_user", table_name="auth_sessions")
    op.drop_table("auth_sessions")
