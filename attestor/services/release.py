"""Which secrets a device that passed receives, and in what form.

Policy names the secrets of a device class (``secrets``), the ones only its TPM may
open (``tpm_bound_secrets``) and the result status each needs (``secret_tiers``). A
secret is delivered as its value, sealed to the device's TPM (the value passes
through memory only), or, from Vault with response wrapping, as a single-use token
the device unwraps at Vault itself. The audit entry names secrets and versions only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from attestor import audit
from attestor.backends.secrets import SecretSubject, WrappedSecret, wrap_id
from attestor.backends.secrets.vault_kv import VaultKv
from attestor.db import queries
from attestor.db.attestation_queries import DeviceRecord
from attestor.services import webhooks
from attestor.services.context import Services
from identity import ear, tpmwrap
from identity.errors import BackendUnavailable, Conflict
from identity.messages import GrantedSecret, TpmWrapped, VaultWrapped
from identity.policy import PolicyDocument

log = logging.getLogger("attestor.secrets")


@dataclass
class Released:
    granted: list[GrantedSecret] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)  # names, versions, wrap ids
    withheld: list[str] = field(default_factory=list)  # the result's status is too low


def release(svc: Services, document: PolicyDocument, device: DeviceRecord,
            status: str) -> Released:
    out = Released()
    subject = SecretSubject(device.id, device.device_class, device.model)
    for name in document.secrets:
        if not ear.at_least(status, document.secret_tiers.get(name, "warning")):
            out.withheld.append(name)
            continue
        if name in document.tpm_bound_secrets:
            value = svc.secrets.read(name, subject)
            if value is None:
                raise BackendUnavailable(f"policy grants secret {name!r}, which the store lacks")
            sealed = tpmwrap.wrap(value.value, ek_public=device.ek_public,
                                  ak_name=bytes.fromhex(device.ak_name), name=value.name,
                                  version=value.version, device_id=device.id)
            out.granted.append(GrantedSecret(name=name, version=value.version,
                                             tpm_wrap=TpmWrapped(
                credential_blob=sealed.credential_blob, encrypted_secret=sealed.encrypted_secret,
                iv=sealed.iv, ciphertext=sealed.ciphertext)))
            out.audit.append({"name": name, "version": value.version, "delivery": "tpm"})
            continue
        released = svc.secrets.release(name, subject)
        if released is None:
            raise BackendUnavailable(f"policy grants secret {name!r}, which the store lacks")
        if isinstance(released, WrappedSecret):
            out.granted.append(GrantedSecret(name=name, version=released.version,
                                             vault_wrap=VaultWrapped(
                token=released.token, wrap_id=released.wrap_id,
                ttl_seconds=released.ttl_seconds, address=released.address,
                field=released.field)))
            out.audit.append({"name": name, "version": released.version,
                              "delivery": "vault_wrap", "wrap_id": released.wrap_id})
        else:
            out.granted.append(GrantedSecret(name=name, version=released.version,
                                             value=released.value))
            out.audit.append({"name": name, "version": released.version, "delivery": "value"})
    return out


def report_wrap_reuse(svc: Services, device_id: str, name: str, token: str,
                      age_seconds: int) -> str:
    """The device found its wrapping token already used (Vault refused to unwrap it
    within its TTL): confirm with Vault that the token is spent, then audit the reuse
    and raise the alarm. Returns ``recorded``, or ``valid`` if the token still works
    (the device should unwrap again; nothing is recorded as reuse)."""
    store = svc.secrets
    if not isinstance(store, VaultKv) or not store.wrap_ttl:
        raise Conflict("this attestor does not deliver wrapped secrets")
    now = svc.clock()
    wid = wrap_id(token)
    if store.wrapping_token_valid(token):
        return "valid"
    details = {"name": name, "wrap_id": wid, "age_seconds": age_seconds}
    with svc.session() as session, session.begin():
        queries.get_device(session, device_id)
        audit.append(session, at=now, actor=f"device:{device_id}", action="secret.wrap_reuse",
                     outcome="alert", device_id=device_id, subject=f"secret:{name}",
                     details=details)
        webhooks.enqueue(session, svc.settings, "secret.wrap_reused",
                         {"device_id": device_id, **details}, now)
    svc.metrics.wrap_reuse.inc()
    log.warning("wrapping token reuse reported: device %s, secret %s, wrap id %s", device_id,
                name, wid)
    return "recorded"
