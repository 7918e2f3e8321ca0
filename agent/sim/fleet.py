"""A fleet of simulated devices for load tests: software keys, genuine TPM structures.

Each :class:`SimDevice` has an EK (ECC P-256 restricted decryption key with the
TCG template's attributes), an AK and a DevID (:class:`agent.sim.softtpm.SoftKey`),
and the measured boot of :mod:`agent.sim.boot`. It produces exactly what a TPM
would (TPM2B_PUBLIC areas, TPMS_ATTEST quotes and certifies, TPMT_SIGNATUREs, a
TCG event log whose replay gives its PCRs) and answers credential activation in
software because it holds the EK's private key. It talks to the attestor through
its normal API (pre-registration, enrollment, activation, device-signed
challenge and attestation): there is no test-only path in the attestor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import (
    TPM2B_ID_OBJECT,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPMS_ECC_POINT,
)
from tpm2_pytss.internal.crypto import _decrypt, _kdfa, _symdef_to_crypt, kdfe

from agent.client import DeviceSigner
from agent.sim.boot import boot_events, encode_log
from agent.sim.csr import ECDSA_SHA256, CsrTemplate, csr_der
from agent.sim.softtpm import SIGNING_KEY_ATTRS, SoftKey
from identity.eventlog.replay import replay
from identity.eventlog.tcg import parse_event_log
from identity.messages import AttestationRequest, Challenge, EnrollmentRequest, SignedAttest
from identity.pcr import PcrSelection, format_pcr_values, pcr_digest
from identity.protocol import enrollment_binding

EK_ATTRS = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
            | TPMA_OBJECT.ADMINWITHPOLICY | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT)
# TCG EK Credential Profile, PolicyA (PolicySecret(TPM_RH_ENDORSEMENT)), SHA-256
EK_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@cache
def boot_log(banks: tuple[str, ...] = ("sha256",)) -> tuple[bytes, dict[str, dict[int, bytes]]]:
    """The simulated boot's event log and the PCR values its replay gives."""
    log = encode_log(boot_events(), banks)
    return log, replay(parse_event_log(log)).values


def _ek_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    public = TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=int(EK_ATTRS),
                                nameAlg="sha256", authPolicy=EK_POLICY)
    numbers = key.public_key().public_numbers()
    public.publicArea.unique.ecc.x = numbers.x.to_bytes(32, "big")
    public.publicArea.unique.ecc.y = numbers.y.to_bytes(32, "big")
    return bytes(public.marshal())


@dataclass(frozen=True)
class _Quoted:
    log: bytes
    values: dict[str, dict[int, bytes]]
    wire: dict[str, dict[str, str]]
    digest: bytes  # of the values, with the AK's hash


@dataclass
class SimDevice:
    serial: str
    device_class: str = "default"
    ek: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    ak: SoftKey = field(default_factory=SoftKey)
    devid: SoftKey = field(default_factory=lambda: SoftKey(attributes=int(SIGNING_KEY_ATTRS)))
    device_id: str | None = None

    def __post_init__(self) -> None:
        self.ek_public = _ek_public(self.ek)
        self._quoted: dict[PcrSelection, _Quoted] = {}
        self._csr_template: CsrTemplate | None = None

    @property
    def ek_spki(self) -> bytes:
        return self.ek.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)

    def preregistration(self) -> dict[str, Any]:
        return {"serial": self.serial, "device_class": self.device_class,
                "ek_public_key": b64(self.ek_spki)}

    def enrollment(self) -> EnrollmentRequest:
        """Step one, as the agent builds it (EK public area, AK, DevID and its certify)."""
        attest, signature = self.ak.certify(
            self.devid.public, enrollment_binding(self.ek_public, self.ak.name))
        return EnrollmentRequest(ek_public=self.ek_public, ak_public=self.ak.public,
                                 devid_public=self.devid.public,
                                 devid_certify=SignedAttest(attest=attest, signature=signature),
                                 serial=self.serial, device_class=self.device_class)

    def activate(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential in software: ECDH with the EK, KDFe, then the
        credential blob's HMAC (bound to the AK's Name) and AES-CFB."""
        public, _ = TPM2B_PUBLIC.unmarshal(self.ek_public)
        area = public.publicArea
        secret, _ = TPMS_ECC_POINT.unmarshal(encrypted_secret[2:])
        peer = ec.EllipticCurvePublicNumbers(int.from_bytes(bytes(secret.x), "big"),
                                             int.from_bytes(bytes(secret.y), "big"),
                                             ec.SECP256R1()).public_key()
        shared = self.ek.exchange(ec.ECDH(), peer)
        own_x = self.ek.public_key().public_numbers().x.to_bytes(
            math.ceil(self.ek.curve.key_size / 8), "big")
        seed = kdfe(area.nameAlg, shared, b"IDENTITY\x00", bytes(secret.x), own_x, 256)
        blob, _ = TPM2B_ID_OBJECT.unmarshal(credential_blob)
        data = bytes(blob.credential)
        size = int.from_bytes(data[:2], "big")
        integrity, encrypted = data[2:2 + size], data[2 + size:]
        hmac_key = _kdfa(area.nameAlg, seed, b"INTEGRITY", b"", b"", 256)
        mac = hmac.new(hmac_key, encrypted + self.ak.name, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, integrity):
            raise ValueError("credential blob integrity check failed (wrong EK or AK)")
        cipher, mode, bits = _symdef_to_crypt(area.parameters.asymDetail.symmetric)
        key = _kdfa(area.nameAlg, seed, b"STORAGE", self.ak.name, b"", bits)
        plain = _decrypt(cipher, mode, key, encrypted)
        length = int.from_bytes(plain[:2], "big")
        return bytes(plain[2:2 + length])

    def signer(self) -> DeviceSigner:
        """Requests signed by the DevID key, as the agent's TPM would sign them."""
        assert self.device_id is not None  # noqa: S101 (enrolled before attesting)
        private = self.devid.private
        assert isinstance(private, ec.EllipticCurvePrivateKey)  # noqa: S101
        return DeviceSigner(self.device_id, partial(private.sign, signature_algorithm=ECDSA_SHA256))

    def _pcrs(self, selection: PcrSelection) -> _Quoted:
        """The boot log and the selected PCRs (constant for a device: computed once)."""
        quoted = self._quoted.get(selection)
        if quoted is None:
            log, values = boot_log(tuple(bank for bank, _ in selection.banks))
            picked = {bank: {i: values[bank][i] for i in idx} for bank, idx in selection.banks}
            quoted = self._quoted[selection] = _Quoted(
                log, picked, format_pcr_values(picked),
                pcr_digest(selection, picked, self.ak.hash_name))
        return quoted

    def _csr(self, private: ec.EllipticCurvePrivateKey) -> bytes:
        """The workload key's CSR, as :func:`csr_info` and :func:`assemble_csr` build it."""
        if self._csr_template is None or self._csr_template.common_name != str(self.device_id):
            self._csr_template = CsrTemplate.of(str(self.device_id))
        info = self._csr_template.info(private.public_key())
        return csr_der(info, private.sign(info, ECDSA_SHA256))

    def evidence(self, challenge: Challenge) -> AttestationRequest:
        """The attestation request for ``challenge``: quote, PCRs, event log, a fresh
        workload key with its certify and CSR."""
        nonce = challenge.nonce
        selection = PcrSelection.of(challenge.pcr_selection)
        pcrs = self._pcrs(selection)
        attest, signature = self.ak.quote(selection, pcrs.values, nonce, digest=pcrs.digest)
        workload = SoftKey(attributes=int(SIGNING_KEY_ATTRS))
        c_attest, c_signature = self.ak.certify(workload.public, nonce)
        private = workload.private
        assert isinstance(private, ec.EllipticCurvePrivateKey)  # noqa: S101
        return AttestationRequest(
            nonce=nonce, quote=SignedAttest(attest=attest, signature=signature),
            pcrs=pcrs.wire, event_log=pcrs.log, csr=self._csr(private),
            key_public=workload.public,
            key_certify=SignedAttest(attest=c_attest, signature=c_signature))
