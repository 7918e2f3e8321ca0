"""Attacks built from genuine swtpm output, each refused with its reason code."""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest
from tpm2_pytss import TPM2_ALG, TPM2B_DIGEST, TPMT_SIG_SCHEME, TPMT_TK_HASHCHECK

from agent.attest import collect_evidence
from agent.client import AttestorError
from agent.sim.fleet import b64 as _b64
from agent.sim.softtpm import SoftKey, software_pcrs
from agent.tpm.device import DEVID_HANDLE, Tpm, TpmError
from identity.checks import CheckRunner
from identity.errors import AkNotRestricted
from identity.pcr import PcrSelection
from identity.tpm.ak import check_attestation_key, load_key
from identity.tpm.keys import public_key
from identity.tpm.quote import verify_quote
from identity.tpm.structures import parse_public
from identity.x509.csr import assemble_csr, csr_info
from tests.harness import Device, LiveAttestor, enroll_and_learn, enrollment_body

pytestmark = [pytest.mark.tpm, pytest.mark.adversarial, pytest.mark.e2e]
SEL = PcrSelection.of({"sha256": range(8)})


def _tpm_sign(tpm: Tpm, handle: int, data: bytes) -> bytes:
    """TPM2_Sign of H(data) with a persistent unrestricted key: allowed for any digest."""
    key = tpm.ectx.tr_from_tpmpublic(handle)
    scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
    scheme.details.any.hashAlg = TPM2_ALG.SHA256
    ticket = TPMT_TK_HASHCHECK(tag=0x8024, hierarchy=0x40000007)
    sig = tpm.ectx.sign(key, TPM2B_DIGEST(hashlib.sha256(data).digest()), scheme, ticket)
    return bytes(sig.marshal())


def test_unrestricted_key_signs_forged_quotes_so_enrollment_refuses_it(device: Device) -> None:
    """The DevID (unrestricted) signs a forged TPMS_ATTEST the TPM never produced; as an AK
    its "quote" would verify. Enrollment's AK check is what stops it."""
    tpm = device.tpm
    tpm.ensure_srk()
    devid_public = tpm.create_devid()
    forger = SoftKey()  # builds the forged structure's bytes; the TPM key signs them
    nonce = b"\x42" * 32
    fake_pcrs = software_pcrs(SEL, seed=b"whatever boot I claim")
    forged, _ = forger.quote(SEL, fake_pcrs, nonce)
    signature = _tpm_sign(tpm, DEVID_HANDLE, forged)
    as_ak = load_key(devid_public)
    result = verify_quote(CheckRunner(), as_ak, forged, signature, nonce=nonce,
                          pcr_values=fake_pcrs, required=SEL)
    assert result.passed  # the danger: a valid-looking quote over invented PCRs
    with pytest.raises(AkNotRestricted):
        check_attestation_key(devid_public)


def test_ak_from_another_tpm_cannot_be_activated(attestor: LiveAttestor, device: Device,
                                                 other_device: Device) -> None:
    """Device A's genuine EK with device B's AK: the credential is sealed to A's EK and
    bound to B's AK, so neither TPM can open it, and no guess is accepted."""
    device.tpm.ensure_srk()
    device.tpm.create_ak()  # A has an AK of its own, just not the one enrolled
    body = enrollment_body(device.tpm, other_device.tpm)
    challenge = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                           headers=attestor.enroller_headers)
    assert challenge.status_code == 201, challenge.text
    data = challenge.json()
    blob = base64.b64decode(data["credential_blob"])
    secret = base64.b64decode(data["encrypted_secret"])
    for tpm in (device.tpm, other_device.tpm):
        with pytest.raises(TpmError, match="activation failed"):
            tpm.activate_credential(blob, secret)
    guess = httpx.post(f"{attestor.url}/v1/enrollments/{data['enrollment_id']}/activation",
                       json={"secret": _b64(b"\x00" * 32)})
    assert guess.json()["code"] == "activation.secret_mismatch"


def test_devid_certified_by_another_ak_is_refused(attestor: LiveAttestor, device: Device,
                                                  other_device: Device) -> None:
    body = enrollment_body(device.tpm, device.tpm)
    foreign = enrollment_body(device.tpm, other_device.tpm)
    body["devid_certify"] = foreign["devid_certify"]
    response = httpx.post(f"{attestor.url}/v1/enrollments", json=body,
                           headers=attestor.enroller_headers)
    assert response.status_code == 403
    codes = response.json()["codes"]
    assert "certify.signature_invalid" in codes and "certify.name_mismatch" in codes


def test_csr_for_a_key_the_ak_did_not_certify_is_refused(attestor: LiveAttestor,
                                                         device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        evidence = collect_evidence(config, device.tpm, config.device_id,
                                    client.challenge(config.device_id))
        other_key = device.tpm.create_workload_key()
        other_public = parse_public(other_key.public.marshal())
        info = csr_info(public_key(other_public), config.device_id)
        csr = assemble_csr(info, "ecdsa", "sha256", device.tpm.sign_digest(other_key, info))
        body = dict(evidence.body, csr=_b64(csr))
        with pytest.raises(AttestorError) as refused:
            client.attest(config.device_id, body)
    assert refused.value.codes == ["csr.key_mismatch"]


def test_quote_from_the_device_itself_with_a_stale_nonce_is_refused(
    attestor: LiveAttestor, device: Device
) -> None:
    """A genuine quote of this very TPM, made for an earlier challenge."""
    config = enroll_and_learn(attestor, device)
    assert config.device_id
    with attestor.client(config, device.tpm) as client:
        old = collect_evidence(config, device.tpm, config.device_id,
                               client.challenge(config.device_id))
        fresh = collect_evidence(config, device.tpm, config.device_id,
                                 client.challenge(config.device_id))
        body = dict(fresh.body, quote=old.body["quote"])
        with pytest.raises(AttestorError) as refused:
            client.attest(config.device_id, body)
    assert refused.value.codes == ["quote.nonce_mismatch"]
