"""device IMA state and attestation event log

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import attestor.db.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_log', sa.LargeBinary(), nullable=True))

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ima_state', sa.JSON(), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('ima_state')

    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.drop_column('event_log')


