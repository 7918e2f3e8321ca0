"""service: audit chain, api keys, preregistration, webhooks

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import attestor.db.types
from attestor.db.chain import GENESIS, entry_hash


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('api_keys',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('key_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_checkpoints',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('kid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signature', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('preregistrations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ek_key_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('device_class', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ek_certificate', sa.LargeBinary(), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('enrolled_device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('enrolled_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ek_key_sha256')
    )
    with op.batch_alter_table('preregistrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_preregistrations_serial'), ['serial'], unique=False)

    op.create_table('request_nonces',
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('nonce', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('expires_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('device_id', 'nonce')
    )
    with op.batch_alter_table('request_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_request_nonces_expires_at'), ['expires_at'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'), ['next_attempt_at'], unique=False)

    _rechain_audit_events()

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False, server_default='issued'))
        batch_op.add_column(sa.Column('revoked_reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_certificates_status'), ['status'], unique=False)

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state_reason', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column('state_changed_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_reasons', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False, server_default=''))




def downgrade() -> None:

    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('last_reasons')
        batch_op.drop_column('state_changed_at')
        batch_op.drop_column('state_reason')

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_status'))
        batch_op.drop_column('revoked_reason')
        batch_op.drop_column('status')

    raise NotImplementedError("the hash-chained audit log cannot be downgraded")

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'))

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('request_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_request_nonces_expires_at'))

    op.drop_table('request_nonces')
    with op.batch_alter_table('preregistrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_preregistrations_serial'))

    op.drop_table('preregistrations')
    op.drop_table('audit_head')
    op.drop_table('audit_checkpoints')
    op.drop_table('api_keys')



def _rechain_audit_events() -> None:
    """Recreate audit_events with its chain columns, chaining the existing entries in order."""
    for index in ("ix_audit_events_action", "ix_audit_events_at", "ix_audit_events_device_id"):
        op.drop_index(index, table_name="audit_events")
    op.rename_table("audit_events", "audit_events_v1")
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", attestor.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    for column in ("action", "actor", "at", "device_id", "outcome"):
        op.create_index(f"ix_audit_events_{column}", "audit_events", [column], unique=False)
    old = sa.table("audit_events_v1", sa.column("id", sa.Integer),
                   sa.column("at", attestor.db.types.UtcDateTime()), sa.column("actor"),
                   sa.column("action"), sa.column("outcome"), sa.column("device_id"),
                   sa.column("details", sa.JSON))
    new = sa.table("audit_events", *(sa.column(c) for c in (
        "seq", "actor", "action", "outcome", "device_id", "subject", "request_id",
        "prev_hash", "hash")), sa.column("at", attestor.db.types.UtcDateTime()),
        sa.column("reasons", sa.JSON), sa.column("details", sa.JSON))
    conn = op.get_bind()
    prev, seq = GENESIS, 0
    for row in conn.execute(sa.select(old).order_by(old.c.id)).mappings():
        seq += 1
        reasons = list((row["details"] or {}).get("reasons", []))
        fields = dict(seq=seq, at=row["at"], actor=row["actor"], action=row["action"],
                      outcome=row["outcome"], device_id=row["device_id"], subject=None,
                      reasons=reasons, request_id=None, details=row["details"] or {})
        digest = entry_hash(**fields, prev_hash=prev)
        conn.execute(sa.insert(new).values(**fields, prev_hash=prev, hash=digest))
        prev = digest
    op.drop_table("audit_events_v1")
    head = sa.table("audit_head", sa.column("id"), sa.column("seq"), sa.column("hash"))
    conn.execute(sa.insert(head).values(id=1, seq=seq, hash=prev))
