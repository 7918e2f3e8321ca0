"""auth refusal counts: failed authentication per source address and window

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import attestor.db.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_refusals',
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('window_start', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('source', 'window_start', 'code')
    )


def downgrade() -> None:
    op.drop_table('auth_refusals')
