"""retention: camera retention floor override, pending object deletes

``cameras.retention_override``: an admin's explicit permission for
``retention_days`` below the 30-day floor. ``retention_deletes``: objects whose
index rows the retention cleaner removed, until their delete is confirmed.

Revision ID: 0005
Revises: 0006
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cameras') as batch:
        batch.add_column(sa.Column('retention_override', sa.Boolean(), nullable=False, server_default=sa.false()))
    BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
    op.create_table('retention_deletes',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('object_key', sa.Text(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('retention_deletes')
    with op.batch_alter_table('cameras') as batch:
        batch.drop_column('retention_override')
