"""ownership bound to a manufacturer root: the root a serial may onboard with

Revision ID: 0008
Revises: 0007

Each ownership record gains ``root_sha256``, the SHA-256 of the manufacturer root
certificate the device's IAK and IDevID must chain to (docs/onboarding.md). Existing
records are backfilled only when that is unambiguous: when the owner has ever imported
exactly one manufacturer root (removed ones count), every record is bound to it. Otherwise
they stay NULL, and onboarding refuses them (``onboarding.manufacturer_unbound``) until
the owner imports them again naming their root.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ownership') as batch:
        batch.add_column(sa.Column('root_sha256', sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=True))
    roots = sa.table('manufacturer_roots', sa.column('sha256', sa.String),
                     sa.column('is_root', sa.Boolean))
    ownership = sa.table('ownership', sa.column('root_sha256', sa.String))
    conn = op.get_bind()
    found = conn.execute(sa.select(roots.c.sha256).where(roots.c.is_root.is_(True))
                         .limit(2)).scalars().all()
    if len(found) == 1:
        conn.execute(sa.update(ownership).values(root_sha256=found[0]))


def downgrade() -> None:
    with op.batch_alter_table('ownership') as batch:
        batch.drop_column('root_sha256')
