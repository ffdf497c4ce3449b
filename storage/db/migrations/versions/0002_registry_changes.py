"""registry change counter

``Registry.version()`` was (camera count, newest ``updated_us``). Removing the
newest camera and adding another can give back a version a poller has already
seen, and so can two edits within one clock tick: the change would be missed.
A counter bumped in the same transaction as every camera change cannot repeat.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('registry_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('changes', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(table, [{'id': 1, 'changes': 0}])


def downgrade() -> None:
    op.drop_table('registry_state')
