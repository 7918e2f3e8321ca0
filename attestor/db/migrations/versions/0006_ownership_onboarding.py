"""ownership and onboarding: manufacturer roots, ownership records, onboarding challenges

Revision ID: 0006_onboarding
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import attestor.db.types


revision = '0006_onboarding'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('manufacturer_roots',
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('certificate', sa.LargeBinary(), nullable=False),
    sa.Column('is_root', sa.Boolean(), nullable=False),
    sa.Column('imported_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('imported_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('removed_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('ownership',
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('device_class', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('idevid_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('oem', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('batch', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('imported_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('imported_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('changed_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('serial')
    )
    op.create_index(op.f('ix_ownership_state'), 'ownership', ['state'], unique=False)
    op.create_table('onboarding_challenges',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('idevid_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('onboarding_challenges')
    op.drop_index(op.f('ix_ownership_state'), table_name='ownership')
    op.drop_table('ownership')
    op.drop_table('manufacturer_roots')
