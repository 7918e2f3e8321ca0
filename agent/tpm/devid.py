"""IAK and IDevID in the device's TPM (TCG DevID spec): create them from the spec's
templates as endorsement-hierarchy primaries, persist them at the spec's handles, keep
their certificates in NV, and sign with the IDevID.

Templates, handles and NV indices come from :mod:`identity.devid.keys`. Every transient
object is flushed (swtpm has three slots and no resource manager).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2B_DIGEST,
    TPM2B_NV_PUBLIC,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_NV,
    TPMA_OBJECT,
    TPMS_NV_PUBLIC,
    TPMT_SIG_SCHEME,
    TPMT_TK_HASHCHECK,
    TSS2_Exception,
)

from agent.tpm.device import Tpm, TpmError
from identity.devid.keys import KeyTemplate

NV_CHUNK = 512  # below every TPM's TPM_PT_NV_BUFFER_MAX (swtpm: 1024)
NV_ATTRIBUTES = (TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD
                 | TPMA_NV.NO_DA)


def _public(template: KeyTemplate) -> TPM2B_PUBLIC:
    public = TPM2B_PUBLIC.parse(template.algorithm,
                                objectAttributes=TPMA_OBJECT(template.attributes))
    area = public.publicArea
    if area.type == TPM2_ALG.ECC:
        area.unique.ecc.x = template.unique
    else:
        area.unique.rsa = template.unique
    return public


def create_devid_key(tpm: Tpm, template: KeyTemplate, handle: int) -> bytes:
    """CreatePrimary in the endorsement hierarchy from ``template``, persisted at
    ``handle`` (replacing what was there); the marshalled TPM2B_PUBLIC."""
    try:
        obj, public, *_ = tpm.ectx.create_primary(TPM2B_SENSITIVE_CREATE(), _public(template),
                                                  ESYS_TR.ENDORSEMENT)
    except TSS2_Exception as exc:
        raise TpmError(f"cannot create the {template.name} key: {exc}") from exc
    with obj:
        tpm.persist(obj, handle)
    return bytes(public.marshal())


def write_nv(tpm: Tpm, index: int, data: bytes) -> None:
    """Define (or redefine) NV ``index`` with the owner's authorization and write ``data``."""
    try:
        old = tpm.ectx.tr_from_tpmpublic(index)
    except TSS2_Exception:
        old = None
    try:
        if old is not None:
            tpm.ectx.nv_undefine_space(old, ESYS_TR.OWNER)
        info = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=TPM2_ALG.SHA256, attributes=NV_ATTRIBUTES,
            dataSize=len(data)))
        nv = tpm.ectx.nv_define_space(b"", info, ESYS_TR.OWNER)
        for offset in range(0, len(data), NV_CHUNK):
            tpm.ectx.nv_write(nv, data[offset:offset + NV_CHUNK], offset, ESYS_TR.OWNER)
    except TSS2_Exception as exc:
        raise TpmError(f"cannot write NV index 0x{index:08x}: {exc}") from exc


def read_nv(tpm: Tpm, index: int) -> bytes | None:
    """The whole content of NV ``index``, or None when it is not defined."""
    try:
        nv = tpm.ectx.tr_from_tpmpublic(index)
    except TSS2_Exception:
        return None
    try:
        public, _ = tpm.ectx.nv_read_public(nv)
        size = int(public.nvPublic.dataSize)
        out = bytearray()
        for offset in range(0, size, NV_CHUNK):
            out += bytes(tpm.ectx.nv_read(nv, min(NV_CHUNK, size - offset), offset, nv))
    except TSS2_Exception as exc:
        raise TpmError(f"cannot read NV index 0x{index:08x}: {exc}") from exc
    return bytes(out)


def sign(tpm: Tpm, handle: int, data: bytes) -> bytes:
    """SHA-256 signature with the persistent unrestricted key at ``handle``: DER ECDSA for
    an ECC key, PKCS#1 v1.5 for an RSA key (the IDevID's own scheme)."""
    obj = tpm.persistent(handle)
    if obj is None:
        raise TpmError(f"no key at persistent handle 0x{handle:08x}")
    public, _, _ = tpm.ectx.read_public(obj)
    rsa = public.publicArea.type == TPM2_ALG.RSA
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.RSASSA if rsa else TPM2_ALG.ECDSA)
    scheme.details.any.hashAlg = TPM2_ALG.SHA256
    ticket = TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=0x40000007)  # TPM_ST_HASHCHECK, RH_NULL
    try:
        sig = tpm.ectx.sign(obj, TPM2B_DIGEST(hashlib.sha256(data).digest()), scheme, ticket)
    except TSS2_Exception as exc:
        raise TpmError(f"cannot sign with the key at 0x{handle:08x}: {exc}") from exc
    if rsa:
        return bytes(sig.signature.rsassa.sig)
    r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
    return encode_dss_signature(r, s)
