"""Factory enrollment on the device: create AK and DevID, prove them, get the DevID cert."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from agent.client import AttestorClient
from agent.config import AgentConfig
from agent.files import atomic_write
from agent.tpm.device import Tpm
from agent.verify import check_issued
from identity.protocol import enrollment_binding
from identity.tpm.keys import public_key
from identity.tpm.structures import object_name, parse_public

DEVID_CERT = "devid.pem"
CA_FILE = "ca.pem"


class EnrollmentError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Enrolled:
    device_id: str
    certificate: x509.Certificate
    ek_type: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def provision(config: AgentConfig, tpm: Tpm, client: AttestorClient, now: dt.datetime) -> Enrolled:
    """Create the keys at their persistent handles and enroll with the attestor."""
    ek = tpm.endorsement()
    srk = tpm.ensure_srk(config.srk_handle)
    ak = tpm.create_ak(config.ak_handle, config.srk_handle)
    devid = tpm.create_devid(config.devid_handle, config.srk_handle)
    ak_name = object_name(parse_public(ak))
    certify = tpm.certify_persistent(
        config.devid_handle, enrollment_binding(ek.public, ak_name), config.ak_handle
    )
    body = {
        "ek_public": _b64(ek.public),
        "ek_certificate": _b64(ek.certificate) if ek.certificate else None,
        "ek_chain": [_b64(cert) for cert in ek.chain[:8]],
        "ak_public": _b64(ak),
        "srk_public": _b64(srk),
        "devid_public": _b64(devid),
        "devid_certify": {"attest": _b64(certify.attest), "signature": _b64(certify.signature)},
        "serial": config.serial,
        "device_class": config.device_class,
    }
    challenge = client.enroll(body)
    secret = tpm.activate_credential(
        base64.b64decode(challenge["credential_blob"]),
        base64.b64decode(challenge["encrypted_secret"]),
        config.ak_handle,
    )
    result = client.activate(challenge["enrollment_id"], _b64(secret))
    cert = check_issued(
        result["certificate"], result["chain"], result["ca"],
        public_key(parse_public(devid)), now,
    )
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(config.state_dir / CA_FILE, result["ca"].encode())
    atomic_write(config.state_dir / DEVID_CERT, (result["certificate"] + result["chain"]).encode())
    config.device_id = result["device_id"]
    config.save()
    return Enrolled(result["device_id"], cert, ek.ek_type)
