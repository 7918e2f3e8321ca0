"""`doctor`'s enrollment check: are the keys in the TPM the ones the attestor knows?

Three witnesses, compared with the AK and DevID at their configured handles: the AK
Name `provision` recorded in ``agent.toml``; ``devid.pem``, whose key must be the
DevID; and the attestor's record of the device (``GET /v1/devices/{id}``, which a
device may read about itself). That request is signed by the DevID in the TPM, so
the attestor answering it at all proves the DevID is the enrolled one; its
``ak_name`` then says whether the AK is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agent.client import AttestorClient, AttestorError, Unreachable, with_failover
from agent.config import AgentConfig
from agent.doctor import FAIL, OK, WARN, Check, RecordProbe
from agent.keyswap import DEVID_CERT, pending
from identity.tpm.keys import public_key
from identity.tpm.structures import object_name, parse_public

if TYPE_CHECKING:
    from agent.tpm.device import Tpm
    from identity.messages import DevicePublic

NAME = "enrollment"


def recovery(config: AgentConfig) -> str:
    return (f"the TPM's keys are not the ones the attestor has for device {config.device_id} "
            "(re-enrolled from elsewhere, or a provisioning cut off after the attestor "
            "answered): at a factory station run `edge-agent provision --force --attestor "
            "URL` with an enroller credential, or ask an operator to check the device's record")


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _local(config: AgentConfig, ak_name: str, devid_public: bytes) -> list[str]:
    """Where the TPM disagrees with what `provision` left in the state directory."""
    problems = []
    if config.ak_name and config.ak_name != ak_name:
        problems.append(f"the AK at 0x{config.ak_handle:08x} is not the one provisioned "
                        f"(Name {ak_name[:12]}…, agent.toml ak_name {config.ak_name[:12]}…)")
    try:
        cert = x509.load_pem_x509_certificate((config.state_dir / DEVID_CERT).read_bytes())
    except (OSError, ValueError):
        return problems  # no identity certificate to compare (the credentials check says)
    if _spki(cert.public_key()) != _spki(public_key(parse_public(devid_public))):
        problems.append(f"{DEVID_CERT} certifies another key than the DevID at "
                        f"0x{config.devid_handle:08x}")
    return problems


def enrollment(config: AgentConfig, tpm: Tpm, record: RecordProbe | None) -> Check:
    interrupted = pending(config.state_dir)
    if interrupted:
        return Check(NAME, FAIL, interrupted,
                     "run `edge-agent attest --once`: it first completes the provisioning "
                     "if the attestor confirmed it, else removes its new keys")
    handles = (config.ak_handle, config.devid_handle)
    if not config.device_id or not all(tpm.has(h) for h in handles):
        return Check(NAME, WARN, "not checked: no enrolled keys (see persistent_objects)",
                     "fix persistent_objects first")
    ak_name = object_name(parse_public(tpm.read_public(config.ak_handle))).hex()
    devid_public = tpm.read_public(config.devid_handle)
    devid_name = object_name(parse_public(devid_public)).hex()
    problems = _local(config, ak_name, devid_public)
    if problems:
        return Check(NAME, FAIL, "; ".join(problems), recovery(config))
    if record is None:
        return Check(NAME, OK, "AK and DevID match agent.toml and devid.pem (attestor not "
                     "asked: --offline)")
    try:
        known = record(tpm)
    except AttestorError as exc:
        if exc.code == "auth.invalid":  # unknown device, or signed by another DevID
            return Check(NAME, FAIL, f"the attestor refuses requests signed by the DevID at "
                         f"0x{config.devid_handle:08x} ({exc.code}: {exc.detail})",
                         recovery(config))
        return Check(NAME, WARN, f"not compared with the attestor: {exc}",
                     "see the attestor and clock checks")
    except Unreachable as exc:
        return Check(NAME, WARN, f"not compared with the attestor: {exc}",
                     "see the attestor check")
    differ = [f"{what} (TPM {mine[:12]}…, attestor {theirs[:12]}…)"
              for what, mine, theirs in (("AK", ak_name, known.ak_name),
                                         ("DevID", devid_name, known.devid_name))
              if isinstance(theirs, str) and theirs != mine]
    if differ:
        return Check(NAME, FAIL, "the attestor knows another " + " and ".join(differ),
                     recovery(config))
    return Check(NAME, OK, f"AK and DevID are the ones the attestor has for device "
                 f"{config.device_id}")


def attestor_record(config: AgentConfig) -> RecordProbe:
    """The probe ``doctor`` uses: this device's record, asked with a DevID signature."""
    from agent.attest import device_signer

    def probe(tpm: Tpm) -> DevicePublic:
        bundle = str(config.ca_bundle) if config.ca_bundle else None
        with AttestorClient(config.urls, bundle, signer=device_signer(config, tpm)) as client:
            return with_failover(client, lambda: client.device(str(config.device_id)))

    return probe
