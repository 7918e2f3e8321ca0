"""Zero-touch onboarding on first boot (docs/onboarding.md): no station, no API key.

The OEM left an IAK and an IDevID in the TPM and their certificates in NV. The agent
asks for a nonce with its IDevID certificate, creates its local keys (LAK as the
attestation key, LDevID as the device identity key, the same templates as a station
enrollment), has the IAK certify the IDevID and both new keys over the nonce, signs the
nonce and the new keys' Names with the IDevID, and gets its LDevID certificate from the
owner's attestor. All or nothing, as enrollment (agent/keyswap.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt

from agent import keyswap
from agent.client import AttestorClient
from agent.config import AgentConfig
from agent.enroll import AlreadyEnrolled, Enrolled, EnrollmentError
from agent.tpm.device import Tpm
from agent.tpm.devid import read_nv, sign
from agent.verify import check_issued
from identity.devid.evidence import certify_binding, idevid_binding
from identity.devid.keys import (
    DEVID_CHAIN_NV,
    IAK_CERT_NV,
    IAK_HANDLE,
    IDEVID_CERT_NV,
    IDEVID_HANDLE,
)
from identity.devid.messages import (
    OnboardedDevice,
    OnboardingChallenge,
    OnboardingChallengeRequest,
    OnboardingRequest,
)
from identity.messages import SignedAttest
from identity.tpm.keys import public_key
from identity.tpm.structures import object_name, parse_public
from identity.truststore import split_der


class NotProvisionedByOem(EnrollmentError):
    """The TPM holds no IAK/IDevID (or no certificates): use a station enrollment."""


def oem_identity(tpm: Tpm) -> tuple[bytes, bytes, list[bytes]]:
    """(IAK certificate, IDevID certificate, chain) from the TPM's NV indices."""
    iak, idevid = read_nv(tpm, IAK_CERT_NV), read_nv(tpm, IDEVID_CERT_NV)
    if iak is None or idevid is None or not tpm.has(IAK_HANDLE) or not tpm.has(IDEVID_HANDLE):
        raise NotProvisionedByOem("this TPM holds no IAK/IDevID from its manufacturer "
                                  f"(NV 0x{IAK_CERT_NV:08x}, 0x{IDEVID_CERT_NV:08x})")
    chain = read_nv(tpm, DEVID_CHAIN_NV)
    return iak, idevid, split_der(chain) if chain else []


def build_request(tpm: Tpm, challenge: OnboardingChallenge, iak_cert: bytes,
                  idevid_cert: bytes, chain: list[bytes], *, ek_public: bytes,
                  srk_public: bytes | None, lak_handle: int, ldevid_handle: int,
                  iak_handle: int = IAK_HANDLE, idevid_handle: int = IDEVID_HANDLE,
                  ) -> OnboardingRequest:
    """The onboarding evidence for ``challenge``: the IAK certifies the IDevID and the new
    LAK and LDevID over the nonce; the IDevID signs the nonce and the new keys' Names."""
    iak_public = tpm.read_public(iak_handle)
    lak, ldevid = tpm.read_public(lak_handle), tpm.read_public(ldevid_handle)
    lak_name, ldevid_name = object_name(parse_public(lak)), object_name(parse_public(ldevid))
    binding = certify_binding(challenge.nonce, object_name(parse_public(iak_public)))

    def signed(handle: int) -> SignedAttest:
        done = tpm.certify_persistent(handle, binding, ak_handle=iak_handle)
        return SignedAttest(attest=done.attest, signature=done.signature)

    return OnboardingRequest(
        challenge_id=challenge.challenge_id, iak_certificate=iak_cert,
        idevid_certificate=idevid_cert, chain=chain, ek_public=ek_public,
        iak_public=iak_public, idevid_public=tpm.read_public(idevid_handle),
        idevid_certify=signed(idevid_handle),
        idevid_signature=sign(tpm, idevid_handle,
                              idevid_binding(challenge.nonce, lak_name, ldevid_name)),
        lak_public=lak, lak_certify=signed(lak_handle),
        ldevid_public=ldevid, ldevid_certify=signed(ldevid_handle), srk_public=srk_public,
    )


def onboard(config: AgentConfig, tpm: Tpm, client: AttestorClient,
            now: dt.datetime) -> tuple[Enrolled, OnboardedDevice]:
    """Onboard with the OEM's IAK/IDevID; the device then attests as any other."""
    if config.device_id:
        raise AlreadyEnrolled(f"this device is already enrolled (device {config.device_id})")
    keyswap.recover(config, tpm)
    iak_cert, idevid_cert, chain = oem_identity(tpm)
    challenge = client.onboarding_challenge(
        OnboardingChallengeRequest(idevid_certificate=idevid_cert, chain=chain))
    ek = tpm.endorsement()
    srk = tpm.ensure_srk(config.srk_handle)
    journal = keyswap.begin(config, tpm)
    try:
        lak = tpm.create_ak(journal.new_ak, config.srk_handle)
        ldevid = tpm.create_devid(journal.new_devid, config.srk_handle)
        request = build_request(tpm, challenge, iak_cert, idevid_cert, chain,
                                ek_public=ek.public, srk_public=srk,
                                lak_handle=journal.new_ak, ldevid_handle=journal.new_devid)
        lak_name = object_name(parse_public(lak))
        result = client.onboard(request)
        cert = check_issued(result.certificate, result.chain, result.ca,
                            public_key(parse_public(ldevid)), now)
        journal = keyswap.confirm(config, journal, device_id=result.device_id,
                                  ak_name=lak_name.hex(), ca=result.ca,
                                  certificate=result.certificate + result.chain)
    except BaseException:
        with contextlib.suppress(Exception):
            keyswap.roll_back(config, tpm, journal)
        raise
    keyswap.finish(config, tpm, journal)
    return Enrolled(result.device_id, cert, ek.ek_type, journal.new_ak, journal.new_devid,
                    journal.old), result
