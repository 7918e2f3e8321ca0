"""Factory enrollment on the device: create AK and DevID, prove them, get the DevID cert.

All or nothing (agent/keyswap.py): the new keys are made beside any old ones, and the
old ones stay, with ``agent.toml`` and ``devid.pem``, until the attestor has confirmed
the new enrollment and its certificate checked out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from agent import keyswap
from agent.client import AttestorClient
from agent.config import AgentConfig
from agent.keyswap import CA_FILE, DEVID_CERT
from agent.tpm.device import Tpm
from agent.verify import check_issued
from identity.messages import ActivationRequest, EnrollmentRequest, SignedAttest
from identity.protocol import enrollment_binding
from identity.tpm.keys import public_key
from identity.tpm.structures import object_name, parse_public

__all__ = ["CA_FILE", "DEVID_CERT", "AlreadyEnrolled", "Enrolled", "EnrollmentError", "force_plan",
           "provision"]


class EnrollmentError(Exception):
    pass


class AlreadyEnrolled(EnrollmentError):
    """The device is enrolled; replacing its keys needs ``force``."""


@dataclass(frozen=True, slots=True)
class Enrolled:
    device_id: str
    certificate: x509.Certificate
    ek_type: str
    ak_handle: int
    devid_handle: int
    replaced: tuple[int, ...] = ()  # the old keys' handles, evicted after the switch


def force_plan(config: AgentConfig) -> str:
    """What ``provision --force`` does to an enrolled device, in one paragraph."""
    return (f"device {config.device_id} is enrolled with AK 0x{config.ak_handle:08x} and "
            f"DevID 0x{config.devid_handle:08x}. --force creates a new AK and DevID beside "
            f"them (0x{keyswap.alternate(config.ak_handle):08x}, "
            f"0x{keyswap.alternate(config.devid_handle):08x}) and enrolls those; only when the "
            "attestor has confirmed them and issued the new DevID certificate does the agent "
            "switch to them and remove the old keys. If anything fails, the new keys are "
            "removed and the device keeps its current enrollment.")


def provision(config: AgentConfig, tpm: Tpm, client: AttestorClient, now: dt.datetime,
              *, force: bool = False) -> Enrolled:
    """Create new keys at free persistent handles, enroll them, then switch to them."""
    if config.device_id and not force:
        raise AlreadyEnrolled(
            f"this device is already enrolled (device {config.device_id}); "
            "`edge-agent provision --force` replaces its keys (see --help)")
    done = keyswap.recover(config, tpm)
    if done and config.device_id and not force:  # an interrupted first run, now finished
        raise AlreadyEnrolled(f"{done}; device {config.device_id} is enrolled")
    ek = tpm.endorsement()
    srk = tpm.ensure_srk(config.srk_handle)
    journal = keyswap.begin(config, tpm)
    try:
        ak = tpm.create_ak(journal.new_ak, config.srk_handle)
        devid = tpm.create_devid(journal.new_devid, config.srk_handle)
        ak_name = object_name(parse_public(ak))
        certify = tpm.certify_persistent(
            journal.new_devid, enrollment_binding(ek.public, ak_name), journal.new_ak
        )
        request = EnrollmentRequest(
            ek_public=ek.public,
            ek_certificate=ek.certificate or None,
            ek_chain=list(ek.chain[:8]),
            ak_public=ak,
            srk_public=srk,
            devid_public=devid,
            devid_certify=SignedAttest(attest=certify.attest, signature=certify.signature),
            serial=config.serial,
            device_class=config.device_class,
        )
        challenge = client.enroll(request)
        secret = tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret,
                                         journal.new_ak)
        result = client.activate(challenge.enrollment_id, ActivationRequest(secret=secret))
        cert = check_issued(result.certificate, result.chain, result.ca,
                            public_key(parse_public(devid)), now)
        journal = keyswap.confirm(config, journal, device_id=result.device_id,
                                  ak_name=ak_name.hex(), ca=result.ca,
                                  certificate=result.certificate + result.chain)
    except BaseException:
        _undo(config, tpm, journal)
        raise
    keyswap.finish(config, tpm, journal)
    return Enrolled(result.device_id, cert, ek.ek_type, journal.new_ak, journal.new_devid,
                    journal.old)


def _undo(config: AgentConfig, tpm: Tpm, journal: keyswap.Journal) -> None:
    """Roll back after a failure; if even that fails (the TPM went away), the journal
    stays and the next command that opens the TPM rolls back."""
    with contextlib.suppress(Exception):  # the original error is the one to report
        keyswap.roll_back(config, tpm, journal)
