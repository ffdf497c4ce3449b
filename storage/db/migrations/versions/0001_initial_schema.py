"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gaps',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('stream', sa.String(length=8), nullable=False),
    sa.Column('start_us', sa.BigInteger(), nullable=False),
    sa.Column('end_us', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.create_index('ix_gaps_camera_time', ['camera_id', 'stream', 'start_us'], unique=False)

    op.create_table('init_segments',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('regions',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('parent', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['parent'], ['regions.code'], ),
    sa.PrimaryKeyConstraint('code')
    )
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_regions_parent'), ['parent'], unique=False)

    op.create_table('cameras',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('region', sa.String(length=32), nullable=False),
    sa.Column('main_url', sa.Text(), nullable=False),
    sa.Column('sub_url', sa.Text(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('retention_days', sa.Integer(), nullable=False),
    sa.Column('transcode', sa.String(length=16), nullable=False),
    sa.Column('rtsp_transport', sa.String(length=8), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['region'], ['regions.code'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cameras_region'), ['region'], unique=False)

    op.create_table('segments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('camera_id', sa.String(length=64), nullable=False),
    sa.Column('stream', sa.String(length=8), nullable=False),
    sa.Column('start_us', sa.BigInteger(), nullable=False),
    sa.Column('end_us', sa.BigInteger(), nullable=False),
    sa.Column('object_key', sa.Text(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('codec', sa.String(length=16), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('audio_codec', sa.String(length=16), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('prev_sha256', sa.String(length=64), nullable=True),
    sa.Column('init_sha256', sa.String(length=64), nullable=False),
    sa.Column('keyframes', sa.LargeBinary(), nullable=False),
    sa.Column('drift_us', sa.BigInteger(), nullable=False),
    sa.Column('worker_id', sa.String(length=64), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['init_sha256'], ['init_segments.sha256'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.create_index('ix_segments_camera_time', ['camera_id', 'stream', 'start_us'], unique=True)
        batch_op.create_index('ix_segments_start', ['start_us'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_index('ix_segments_start')
        batch_op.drop_index('ix_segments_camera_time')

    op.drop_table('segments')
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_region'))

    op.drop_table('cameras')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_regions_parent'))

    op.drop_table('regions')
    op.drop_table('init_segments')
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.drop_index('ix_gaps_camera_time')

    op.drop_table('gaps')
