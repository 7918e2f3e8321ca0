"""Provisioning one device on the factory line (TCG DevID spec, OEM creation of the IAK
and IDevID certificates from the EK certificate):

1. read the EK certificate from NV and validate it to a TPM vendor's root;
2. create the IAK and the IDevID from the spec's templates at the spec's handles;
3. prove the IAK lives in the EK's TPM by credential activation (MakeCredential to the
   EK bound to the IAK's Name; the TPM must ActivateCredential);
4. prove the IDevID lives in the same TPM by TPM2_Certify with the IAK over a nonce;
5. issue the IAK certificate (with the EK named by tcg-on-ekPermIdentifier) and the
   IDevID certificate, both naming the device by HardwareModuleName;
6. store them, and the issuing CA certificate, in the TPM's NV indices.

The CA-side steps (1, the MakeCredential and the checks of 3-4, 5) are pure functions of
:mod:`identity`; only the TPM commands run here.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from agent.oem.ca import OemAuthority
from agent.tpm.device import Tpm
from agent.tpm.devid import create_devid_key, write_nv
from identity.checks import CheckRunner
from identity.devid.evidence import fingerprint, spki_sha256
from identity.devid.keys import (
    DEVID_CHAIN_NV,
    IAK_CERT_NV,
    IAK_HANDLE,
    IAK_TEMPLATES,
    IDEVID_CERT_NV,
    IDEVID_HANDLE,
    IDEVID_TEMPLATES,
    check_iak_public,
    check_idevid_public,
)
from identity.devid.manifest import ManifestEntry, sign_manifest
from identity.devid.profile import issue
from identity.ekcert import check_ek_matches, verify_ek_certificate
from identity.errors import EkChainUntrusted, VerificationFailed
from identity.tpm.certify import verify_certify
from identity.tpm.credential import (
    SECRET_SIZE,
    check_activation,
    check_ek_public,
    make_activation,
    secret_digest,
)
from identity.tpm.keys import public_key
from identity.truststore import TrustStore

DER = serialization.Encoding.DER


@dataclass(frozen=True, slots=True)
class Provisioned:
    serial: str
    algorithm: str
    idevid_sha256: str
    ek_sha256: str
    iak_certificate: bytes
    idevid_certificate: bytes


def provision(tpm: Tpm, authority: OemAuthority, vendors: TrustStore, serial: str,
              now: dt.datetime, algorithm: str = "ecc256") -> Provisioned:
    """Provision the TPM behind ``tpm`` as device ``serial``; raises an IdentityError
    (EK chain, activation, certify) when the TPM does not prove what it must."""
    if algorithm not in IAK_TEMPLATES:
        raise ValueError(f"algorithm must be one of {', '.join(IAK_TEMPLATES)}")
    endorsement = tpm.endorsement()
    if endorsement.certificate is None:
        raise EkChainUntrusted("the TPM holds no EK certificate in NV")
    info = verify_ek_certificate(endorsement.certificate, vendors, now, endorsement.chain)
    ek_key = public_key(check_ek_public(endorsement.public))
    check_ek_matches(info, ek_key)

    iak = check_iak_public(create_devid_key(tpm, IAK_TEMPLATES[algorithm], IAK_HANDLE))
    idevid_public = create_devid_key(tpm, IDEVID_TEMPLATES[algorithm], IDEVID_HANDLE)
    idevid = check_idevid_public(idevid_public)

    secret = secrets.token_bytes(SECRET_SIZE)
    challenge = make_activation(endorsement.public, iak.name, secret)
    expected = secret_digest(secret)
    del secret
    answer = tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret,
                                     ak_handle=IAK_HANDLE)
    check_activation(expected, answer)

    nonce = secrets.token_bytes(32)
    signed = tpm.certify_persistent(IDEVID_HANDLE, nonce, ak_handle=IAK_HANDLE)
    runner = CheckRunner()
    verify_certify(runner, iak, signed.attest, signed.signature, idevid_public,
                   qualifying_data=nonce, what="idevid.certify")
    if not runner.passed:
        raise VerificationFailed("the IDevID certify by the IAK failed", runner.checks,
                                 runner.reason_codes)

    ek_digest = spki_sha256(ek_key)
    org = authority.organization
    iak_cert = issue(authority.issuing, iak.key, kind="iak", serial=serial, organization=org,
                     now=now, ek_digest=ek_digest).public_bytes(DER)
    idevid_cert = issue(authority.issuing, idevid.key, kind="idevid", serial=serial,
                        organization=org, now=now).public_bytes(DER)
    write_nv(tpm, IAK_CERT_NV, iak_cert)
    write_nv(tpm, IDEVID_CERT_NV, idevid_cert)
    write_nv(tpm, DEVID_CHAIN_NV, authority.issuing.cert.public_bytes(DER))
    return Provisioned(serial, algorithm, fingerprint(idevid_cert), ek_digest, iak_cert,
                       idevid_cert)


# batches -------------------------------------------------------------------------------

def record(batch_dir: Path, device: Provisioned) -> None:
    """Append the device to the batch (one JSON line each; certificates as files)."""
    batch_dir.mkdir(parents=True, exist_ok=True)
    (batch_dir / f"{device.idevid_sha256}.iak.der").write_bytes(device.iak_certificate)
    (batch_dir / f"{device.idevid_sha256}.idevid.der").write_bytes(device.idevid_certificate)
    entry = {k: v for k, v in asdict(device).items() if not k.endswith("_certificate")}
    with (batch_dir / "devices.jsonl").open("a") as out:
        out.write(json.dumps(entry, sort_keys=True) + "\n")


def batch_manifest(authority: OemAuthority, batch_dir: Path, now: dt.datetime) -> bytes:
    """The batch's signed manifest (serial and IDevID certificate SHA-256 per device)."""
    entries: dict[str, ManifestEntry] = {}
    for line in (batch_dir / "devices.jsonl").read_text().splitlines():
        item = json.loads(line)
        entries[item["serial"]] = ManifestEntry(item["serial"], item["idevid_sha256"])
    return sign_manifest(authority.issuing.key, authority.issuing.cert,
                         oem=authority.organization, batch=batch_dir.name, issued_at=now,
                         devices=list(entries.values()))
