"""audit vocabulary: client address, user agent, hash version; version-1 entries mapped

Revision ID: 0007
Revises: 0006_onboarding

Existing entries keep their version-1 hashes (and so every signed checkpoint, and the
copies sinks hold, stays valid): their outcome, reasons, device id and actor are
rewritten to the current vocabulary by the frozen ``map_v1`` of attestor/db/chain.py,
and the values replaced are kept in ``legacy``. ``audit verify`` recomputes the
original hash from them and checks that the mapped fields are ``map_v1`` of it.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from attestor.db.chain import MAPPED, map_v1


revision = '0007'
down_revision = '0006_onboarding'
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table('audit_events') as batch:
        batch.add_column(sa.Column('client_address',
                                   sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.add_column(sa.Column('user_agent',
                                   sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch.add_column(sa.Column('version', sa.Integer(), server_default='1',
                                   nullable=False))
        batch.add_column(sa.Column('legacy', sa.JSON(none_as_null=True), nullable=True))
    events = sa.table('audit_events', sa.column('seq', sa.BigInteger),
                      *(sa.column(c) for c in ('actor', 'outcome', 'device_id')),
                      sa.column('reasons', sa.JSON), sa.column('details', sa.JSON),
                      sa.column('legacy', sa.JSON))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(sa.select(events).where(events.c.seq > last)
                            .order_by(events.c.seq).limit(BATCH)).mappings().all()
        if not rows:
            break
        for row in rows:
            mapped = map_v1(row)
            changed = {f: row[f] for f in MAPPED if mapped[f] != row[f]}
            if changed:
                conn.execute(sa.update(events).where(events.c.seq == row['seq']).values(
                    **{f: mapped[f] for f in changed}, legacy=changed))
        last = rows[-1]['seq']


def downgrade() -> None:
    events = sa.table('audit_events', sa.column('seq', sa.BigInteger),
                      *(sa.column(c) for c in ('actor', 'outcome', 'device_id')),
                      sa.column('reasons', sa.JSON), sa.column('legacy', sa.JSON),
                      sa.column('version', sa.Integer))
    conn = op.get_bind()
    if conn.execute(sa.select(sa.func.count()).select_from(events)
                    .where(events.c.version != 1)).scalar():
        raise RuntimeError('entries in the version-2 format exist: a downgrade would '
                           'break the chain')
    for row in conn.execute(sa.select(events).where(events.c.legacy.is_not(None))
                            ).mappings().all():
        conn.execute(sa.update(events).where(events.c.seq == row['seq'])
                     .values(**dict(row['legacy'])))
    with op.batch_alter_table('audit_events') as batch:
        for column in ('legacy', 'version', 'user_agent', 'client_address'):
            batch.drop_column(column)
