"""The device's TPM through tpm2-pytss ESAPI: keys, certify, activation, quote.

Transient objects are flushed as soon as they are used: swtpm (and any TPM
reached without a resource manager) has only three slots, and what a process
leaves loaded stays loaded after it exits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_ECC,
    TPM2_HR,
    TPM2_SE,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPML_DIGEST,
    TPML_DIGEST_VALUES,
    TPMT_HA,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMT_TK_HASHCHECK,
    TPMU_HA,
    TSS2_Exception,
)
from tpm2_pytss.tsskey import TSSPrivKey
from tpm2_pytss.utils import NoSuchIndex, NVReadEK, create_ek_template

from agent.tpm.ek_policy import or_branches
from agent.tpm.tcti import open_tcti
from identity.pcr import PcrSelection
from identity.tpm.structures import HASH_IDS

SRK_HANDLE = 0x81000001
AK_HANDLE = 0x81000002
DEVID_HANDLE = 0x81000003
EK_CHAIN_FIRST, EK_CHAIN_LAST = 0x01C00100, 0x01C001FF
EK_TYPES = ("EK-RSA2048", "EK-HIGH-ECC384", "EK-ECC256", "EK-HIGH-RSA2048")
_KEY_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
)
SRK_TEMPLATE = "ecc256:aes128cfb"
AK_TEMPLATE = "ecc256:ecdsa-sha256:null"
DEVID_TEMPLATE = "ecc256:ecdsa-sha256"


class TpmError(Exception):
    """The TPM refused or could not be reached; the message says what was attempted."""


@dataclass(frozen=True, slots=True)
class Endorsement:
    certificate: bytes | None
    public: bytes
    ek_type: str
    chain: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Signed:
    attest: bytes
    signature: bytes


class Tpm:
    """One ESAPI connection to a TPM, named by a TCTI string."""

    def __init__(self, tcti: str, ek_types: tuple[str, ...] = EK_TYPES) -> None:
        self.tcti = tcti
        self.ek_types = ek_types
        try:
            self.ectx = ESAPI(open_tcti(tcti))
        except TSS2_Exception as exc:
            raise TpmError(f"cannot open the TPM at {tcti!r}: {exc}") from exc

    def close(self) -> None:
        self.ectx.close()

    def __enter__(self) -> Tpm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # endorsement ---------------------------------------------------------------

    def _ek_template(self) -> tuple[bytes | None, TPM2B_PUBLIC, str]:
        reader = NVReadEK(self.ectx)
        fallback: tuple[bytes | None, TPM2B_PUBLIC, str] | None = None
        for ek_type in self.ek_types:
            try:
                cert, template = create_ek_template(ek_type, reader)
            except (NoSuchIndex, ValueError, TSS2_Exception):
                continue
            if cert:
                return bytes(cert), template, ek_type
            fallback = fallback or (None, template, ek_type)
        if fallback is None:
            raise TpmError("no usable EK template")
        return fallback

    @contextmanager
    def _ek(self) -> Iterator[tuple[ESYS_TR, TPM2B_PUBLIC, bytes | None, str]]:
        cert, template, ek_type = self._ek_template()
        handle, public, *_ = self.ectx.create_primary(
            TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT
        )
        with handle:
            yield handle, public, cert, ek_type

    def endorsement(self) -> Endorsement:
        """The EK certificate from NV (None if the TPM has none), the EK public area, and
        any EK chain certificates the manufacturer stored in NV."""
        with self._ek() as (_, public, cert, ek_type):
            return Endorsement(cert, public.marshal(), ek_type, self._ek_chain())

    def _ek_chain(self) -> tuple[bytes, ...]:
        """TCG EK certificate chain NV indices 0x01C00100-0x01C001FF, read until one is absent."""
        reader = NVReadEK(self.ectx)
        chain: list[bytes] = []
        for index in range(EK_CHAIN_FIRST, EK_CHAIN_LAST + 1):
            try:
                chain.append(bytes(reader(index)))
            except (NoSuchIndex, TSS2_Exception):
                break
        return tuple(chain)

    # persistent keys -------------------------------------------------------------

    def persistent(self, handle: int) -> ESYS_TR | None:
        """The object persisted at ``handle``, or None when there is none."""
        try:
            return self.ectx.tr_from_tpmpublic(handle)
        except TSS2_Exception:
            return None

    def persist(self, obj: ESYS_TR, handle: int) -> None:
        """EvictControl ``obj`` to ``handle``, evicting what was persisted there."""
        old = self.persistent(handle)
        if old is not None:
            self.ectx.evict_control(ESYS_TR.OWNER, old, handle)
        self.ectx.evict_control(ESYS_TR.OWNER, obj, handle)

    def ensure_srk(self, handle: int = SRK_HANDLE) -> bytes:
        """The storage root key (TCG template ECC P-256), persisted if absent."""
        existing = self.persistent(handle)
        if existing is not None:
            return self.read_public(handle)
        template = TPM2B_PUBLIC.parse(
            SRK_TEMPLATE, objectAttributes=_KEY_ATTRS | TPMA_OBJECT.RESTRICTED
            | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.NODA,
        )
        obj, public, *_ = self.ectx.create_primary(TPM2B_SENSITIVE_CREATE(), template,
                                                    ESYS_TR.OWNER)
        with obj:
            self.persist(obj, handle)
        return bytes(public.marshal())

    def _create_persistent(self, template: str, attrs: TPMA_OBJECT, handle: int,
                           parent: int) -> bytes:
        srk = self.persistent(parent)
        if srk is None:
            raise TpmError(f"no storage key at 0x{parent:08x}")
        pub_template = TPM2B_PUBLIC.parse(template, objectAttributes=_KEY_ATTRS | attrs)
        private, public, *_ = self.ectx.create(srk, TPM2B_SENSITIVE_CREATE(), pub_template)
        obj = self.ectx.load(srk, private, public)
        with obj:
            self.persist(obj, handle)
        return bytes(public.marshal())

    def create_ak(self, handle: int = AK_HANDLE, parent: int = SRK_HANDLE) -> bytes:
        """A restricted ECDSA-P256/SHA-256 signing key, persisted at ``handle``."""
        attrs = TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT
        return self._create_persistent(AK_TEMPLATE, attrs, handle, parent)

    def create_devid(self, handle: int = DEVID_HANDLE, parent: int = SRK_HANDLE) -> bytes:
        """An unrestricted ECDSA-P256 signing key (the DevID), persisted at ``handle``."""
        return self._create_persistent(DEVID_TEMPLATE, TPMA_OBJECT.SIGN_ENCRYPT, handle, parent)

    def read_public(self, handle: int) -> bytes:
        obj = self.persistent(handle)
        if obj is None:
            raise TpmError(f"no object at persistent handle 0x{handle:08x}")
        public, _, _ = self.ectx.read_public(obj)
        return bytes(public.marshal())

    def has(self, handle: int) -> bool:
        return self.persistent(handle) is not None

    def evict(self, handle: int) -> bool:
        """Remove the object persisted at ``handle``; False if there was none."""
        obj = self.persistent(handle)
        if obj is None:
            return False
        try:
            self.ectx.evict_control(ESYS_TR.OWNER, obj, handle)
        except TSS2_Exception as exc:
            raise TpmError(f"cannot evict the object at 0x{handle:08x}: {exc}") from exc
        return True

    # attestation -----------------------------------------------------------------

    def _ak(self, handle: int) -> ESYS_TR:
        ak = self.persistent(handle)
        if ak is None:
            raise TpmError(f"no attestation key at 0x{handle:08x}; provision the device")
        return ak

    def certify_persistent(self, handle: int, qualifying: bytes,
                           ak_handle: int = AK_HANDLE) -> Signed:
        obj = self.persistent(handle)
        if obj is None:
            raise TpmError(f"no object at 0x{handle:08x}")
        return self._certify(obj, qualifying, ak_handle)

    def _certify(self, obj: ESYS_TR, qualifying: bytes, ak_handle: int) -> Signed:
        attest, sig = self.ectx.certify(
            obj, self._ak(ak_handle), TPM2B_DATA(qualifying), TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
        )
        return Signed(bytes(attest), sig.marshal())

    def activate_credential(self, blob: bytes, encrypted_secret: bytes,
                            ak_handle: int = AK_HANDLE) -> bytes:
        """TPM2_ActivateCredential, satisfying the EK's policy (agent/tpm/ek_policy.py)."""
        id_object, _ = TPM2B_ID_OBJECT.unmarshal(blob)
        secret, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        ak = self._ak(ak_handle)
        with self._ek() as (ek, public, *_):
            name_alg = int(public.publicArea.nameAlg)
            hash_name = {v: k for k, v in HASH_IDS.items()}.get(name_alg, "sha256")
            try:
                branches = or_branches(hash_name, bytes(public.publicArea.authPolicy))
            except ValueError as exc:
                raise TpmError(str(exc)) from exc
            session = self.ectx.start_auth_session(
                ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), name_alg,
            )
            with session:
                self.ectx.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
                if branches is not None:
                    self.ectx.policy_or(session, TPML_DIGEST(branches))
                try:
                    cred = self.ectx.activate_credential(
                        ak, ek, id_object, secret, session1=ESYS_TR.PASSWORD, session2=session
                    )
                except TSS2_Exception as exc:
                    raise TpmError(f"credential activation failed: {exc}") from exc
        return bytes(cred)

    def quote(self, selection: PcrSelection, nonce: bytes, ak_handle: int = AK_HANDLE) -> Signed:
        attest, sig = self.ectx.quote(
            self._ak(ak_handle), selection.to_tpml(), TPM2B_DATA(nonce),
            TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
        )
        return Signed(bytes(attest), sig.marshal())

    def pcr_read(self, selection: PcrSelection) -> dict[str, dict[int, bytes]]:
        """Read every selected PCR (a TPM returns at most 8 per call)."""
        values: dict[str, dict[int, bytes]] = {}
        for bank, indices in selection.banks:
            got: dict[int, bytes] = {}
            for start in range(0, len(indices), 8):
                chunk = PcrSelection.of({bank: indices[start:start + 8]})
                _, read_sel, digests = self.ectx.pcr_read(chunk.to_tpml())
                returned = PcrSelection.from_tpml(read_sel)
                flat = [i for _, idx in returned.banks for i in idx]
                for index, digest in zip(flat, digests, strict=True):
                    got[index] = bytes(digest)
            values[bank] = got
        return values

    def pcr_extend(self, pcr: int, digests: dict[str, bytes]) -> None:
        values = TPML_DIGEST_VALUES([
            TPMT_HA(hashAlg=HASH_IDS[bank], digest=TPMU_HA(**{bank: digest}))
            for bank, digest in digests.items()
        ])
        self.ectx.pcr_extend(ESYS_TR.PCR0 + pcr, values)

    def active_banks(self) -> list[str]:
        _, data = self.ectx.get_capability(TPM2_CAP.PCRS, 0, 1)
        banks = []
        for sel in data.data.assignedPCR:
            if any(bytes(sel.pcrSelect)[: int(sel.sizeofSelect)]):
                name = {v: k for k, v in HASH_IDS.items()}.get(int(sel.hash))
                if name:
                    banks.append(name)
        return banks

    def flush_transients(self) -> int:
        """Flush transient objects left by other processes (TPMs without a resource manager)."""
        _, data = self.ectx.get_capability(TPM2_CAP.HANDLES, TPM2_HR.TRANSIENT, 64)
        count = 0
        for handle in data.data.handles:
            self.ectx.flush_context(self.ectx.tr_from_tpmpublic(int(handle)))
            count += 1
        return count

    # workload keys (TSS2 PRIVATE KEY files) ------------------------------------------

    def create_workload_key(self, parent: int = SRK_HANDLE) -> TSSPrivKey:
        return TSSPrivKey.create_ecc(self.ectx, curveID=TPM2_ECC.NIST_P256, parent=parent)

    def certify_key(self, key: TSSPrivKey, qualifying: bytes, ak_handle: int = AK_HANDLE) -> Signed:
        with key.load(self.ectx) as obj:
            return self._certify(obj, qualifying, ak_handle)

    def sign_digest(self, key: TSSPrivKey, data: bytes) -> bytes:
        """ECDSA-SHA256 over ``data`` with a TPM-resident key; DER-encoded signature."""
        with key.load(self.ectx) as obj:
            return self._sign(obj, data)

    def sign_persistent(self, handle: int, data: bytes) -> bytes:
        """ECDSA-SHA256 over ``data`` with a persistent key (the DevID); DER signature."""
        obj = self.persistent(handle)
        if obj is None:
            raise TpmError(f"no key at persistent handle 0x{handle:08x}; provision the device")
        return self._sign(obj, data)

    def _sign(self, obj: ESYS_TR, data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        ticket = TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=0x40000007)  # TPM_ST_HASHCHECK, RH_NULL
        sig = self.ectx.sign(obj, TPM2B_DIGEST(digest), scheme, ticket)
        r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
        s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
        return encode_dss_signature(r, s)
