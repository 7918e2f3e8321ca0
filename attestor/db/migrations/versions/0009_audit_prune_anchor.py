"""audit chain anchor: the signed checkpoint a pruned chain starts after

Revision ID: 0009
Revises: 0008

``audit_head`` gains ``base_seq`` and ``base_hash``: once ``attestor audit prune`` has
deleted the entries up to a signed checkpoint (after checking they are in a verifying
archive), the chain starts after that checkpoint (docs/audit.md, "Pruning"). Existing
chains start at genesis: 0 and the genesis hash.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_head') as batch:
        batch.add_column(sa.Column('base_seq', sa.BigInteger(), nullable=False,
                                   server_default='0'))
        batch.add_column(sa.Column('base_hash', sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=False, server_default='0' * 64))


def downgrade() -> None:
    with op.batch_alter_table('audit_head') as batch:
        batch.drop_column('base_hash')
        batch.drop_column('base_seq')
