"""initial schema

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import attestor.db.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('attestations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('policy_version', sa.Integer(), nullable=True),
    sa.Column('quote_verified', sa.Boolean(), nullable=False),
    sa.Column('pcr_values', sa.JSON(), nullable=False),
    sa.Column('evidence_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('certificate_serial', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attestations_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_attestations_device_id'), ['device_id'], unique=False)

    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_device_id'), ['device_id'], unique=False)

    op.create_table('certificates',
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('not_before', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('not_after', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('pem', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('revoked_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('serial')
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_certificates_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_certificates_not_after'), ['not_after'], unique=False)

    op.create_table('devices',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('device_class', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('ek_public', sa.LargeBinary(), nullable=False),
    sa.Column('ek_certificate', sa.LargeBinary(), nullable=True),
    sa.Column('ak_public', sa.LargeBinary(), nullable=False),
    sa.Column('ak_name', sqlmodel.sql.sqltypes.AutoString(length=132), nullable=False),
    sa.Column('ak_qualified_name', sqlmodel.sql.sqltypes.AutoString(length=132), nullable=True),
    sa.Column('devid_public', sa.LargeBinary(), nullable=False),
    sa.Column('devid_cert_serial', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('enrolled_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_attested_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_verdict', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('clock_reset_count', sa.BigInteger(), nullable=True),
    sa.Column('clock_restart_count', sa.BigInteger(), nullable=True),
    sa.Column('clock_value', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_device_class'), ['device_class'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_last_attested_at'), ['last_attested_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_devices_state'), ['state'], unique=False)

    op.create_table('enrollments',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('device_class', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('ek_public', sa.LargeBinary(), nullable=False),
    sa.Column('ek_certificate', sa.LargeBinary(), nullable=True),
    sa.Column('ak_public', sa.LargeBinary(), nullable=False),
    sa.Column('ak_qualified_name', sqlmodel.sql.sqltypes.AutoString(length=132), nullable=True),
    sa.Column('devid_public', sa.LargeBinary(), nullable=False),
    sa.Column('secret_digest', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollments_device_id'), ['device_id'], unique=False)

    op.create_table('nonces',
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('expires_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', attestor.db.types.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('value')
    )
    with op.batch_alter_table('nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nonces_device_id'), ['device_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_nonces_expires_at'), ['expires_at'], unique=False)

    op.create_table('policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_class', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('device_class', 'version')
    )
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policies_device_class'), ['device_class'], unique=False)

    op.create_table('secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', attestor.db.types.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version')
    )
    with op.batch_alter_table('secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_secrets_name'), ['name'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('secrets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_secrets_name'))

    op.drop_table('secrets')
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policies_device_class'))

    op.drop_table('policies')
    with op.batch_alter_table('nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nonces_expires_at'))
        batch_op.drop_index(batch_op.f('ix_nonces_device_id'))

    op.drop_table('nonces')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollments_device_id'))

    op.drop_table('enrollments')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_state'))
        batch_op.drop_index(batch_op.f('ix_devices_last_attested_at'))
        batch_op.drop_index(batch_op.f('ix_devices_device_class'))

    op.drop_table('devices')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_certificates_not_after'))
        batch_op.drop_index(batch_op.f('ix_certificates_device_id'))

    op.drop_table('certificates')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_device_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attestations_device_id'))
        batch_op.drop_index(batch_op.f('ix_attestations_at'))

    op.drop_table('attestations')

