"""One attestation: challenge, quote, event log, TPM-resident workload key and CSR;
then install the issued credential set atomically, or keep the old one on refusal."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from tpm2_pytss.tsskey import TSSPrivKey

from agent import vaultwrap
from agent.client import AttestorClient, AttestorError, DeviceSigner, MalformedAnswer
from agent.config import AgentConfig
from agent.enroll import CA_FILE
from agent.files import atomic_write, install_set
from agent.tpm.device import Tpm
from agent.verify import check_issued
from identity.errors import MalformedInput
from identity.ima.log import LIST_BANKS, LIST_FILE, bank_of_file, list_file_for, parse_binary
from identity.messages import (
    AttestationRequest,
    AttestationResult,
    Challenge,
    GrantedSecret,
    ImaBank,
    ImaProgress,
    SignedAttest,
    to_json,
)
from identity.pcr import PcrSelection, format_pcr_values
from identity.tpm.keys import PublicKey, public_key
from identity.tpm.structures import parse_attest, parse_public
from identity.tpmwrap import TpmWrap, TpmWrapInvalid, unwrap
from identity.x509.csr import assemble_csr, csr_info

log = logging.getLogger("edge_agent.attest")
STATUS_FILE = "status.json"
RESULT_FILE = "attestation.json"
TOKEN_FILE = "attestation.jwt"  # noqa: S105 (a file name)
MAX_PCR_RACE_RETRIES = 3
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")  # file names from the answer


class NotProvisioned(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Issued:
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    subject_uri: str
    secrets: tuple[str, ...]

    def renew_at(self, fraction: float) -> dt.datetime:
        return self.not_before + (self.not_after - self.not_before) * fraction


def device_signer(config: AgentConfig, tpm: Tpm) -> DeviceSigner:
    """Requests signed by the DevID key at its persistent handle."""
    if not config.device_id:
        raise NotProvisioned("this device is not provisioned: run `edge-agent provision`")
    handle = config.devid_handle
    return DeviceSigner(config.device_id, lambda message: tpm.sign_persistent(handle, message))


def workload_public_key(key: TSSPrivKey) -> PublicKey:
    return public_key(parse_public(key.public.marshal()))


def _quote_stable(tpm: Tpm, selection: PcrSelection, nonce: bytes,
                  ak_handle: int) -> tuple[bytes, bytes, dict[str, dict[int, bytes]]]:
    """Quote with the PCR values the quote covers (re-read if an extend raced us)."""
    for _ in range(MAX_PCR_RACE_RETRIES):
        before = tpm.pcr_read(selection)
        signed = tpm.quote(selection, nonce, ak_handle)
        if tpm.pcr_read(selection) == before:
            return signed.attest, signed.signature, before
    raise RuntimeError("PCRs kept changing while quoting")


def read_event_log(path: Path | None) -> bytes | None:
    if path is None or not path.exists():
        return None
    return path.read_bytes()


def attest_once(config: AgentConfig, tpm: Tpm, client: AttestorClient,
                now: dt.datetime) -> Issued:
    """Attest and install new credentials; AttestorError on refusal (old set kept)."""
    if not config.device_id:
        raise NotProvisioned("this device is not provisioned: run `edge-agent provision`")
    device_id = config.device_id
    client.signer = device_signer(config, tpm)  # this TPM session signs this device's requests
    try:
        return _attest(config, tpm, client, device_id, now)
    except AttestorError as exc:
        record_refusal(config.state_dir, exc, now)
        raise


def record_refusal(state_dir: Path, exc: AttestorError, now: dt.datetime) -> None:
    """A refusal is the last verdict (with the device's state, when the attestor says it
    is quarantined or revoked); an attestor that cannot answer now (5xx, 429) is not a
    verdict on this device, only a failure the renewal loop counts."""
    update: dict[str, object] = {}
    if exc.refusal:
        update |= {"last_verdict": "fail", "reasons": exc.codes, "at": now.isoformat()}
    if exc.device_state is not None:
        update["device_state"] = exc.device_state
    if update:
        write_status(state_dir, update)


@dataclass(frozen=True)
class Evidence:
    request: AttestationRequest
    key: TSSPrivKey
    attest: bytes  # the quote's TPMS_ATTEST

    @property
    def body(self) -> dict[str, Any]:
        """The request as JSON values (what the tests and simulators alter into forgeries)."""
        return to_json(self.request)


def collect_evidence(config: AgentConfig, tpm: Tpm, device_id: str,
                     challenge: Challenge, *, full_ima: bool = False) -> Evidence:
    """Quote, PCRs, event log, a new TPM-resident workload key, its certify and CSR."""
    nonce = challenge.nonce
    selection = PcrSelection.of(challenge.pcr_selection)
    attest, signature, pcrs = _quote_stable(tpm, selection, nonce, config.ak_handle)
    key = tpm.create_workload_key(config.srk_handle)
    certify = tpm.certify_key(key, nonce, config.ak_handle)
    info = csr_info(workload_public_key(key), device_id)
    csr = assemble_csr(info, "ecdsa", "sha256", tpm.sign_digest(key, info))
    log = read_event_log(config.event_log)
    reset_count = parse_attest(attest).reset_count  # as the attestor sees it (see _ima_batch)
    ima_start, ima_log, ima_bank = _ima_batch(config, reset_count, selection,
                                              None if full_ima else challenge.ima)
    request = AttestationRequest(
        nonce=nonce,
        quote=SignedAttest(attest=attest, signature=signature),
        pcrs=format_pcr_values(pcrs),
        event_log=log,
        ima_log=ima_log,
        # one of LIST_BANKS (the attestor checks it); sent only when not sha1 (defaults
        # are left out)
        ima_bank=cast(ImaBank, ima_bank),
        ima_start=ima_start,
        csr=csr,
        key_public=bytes(key.public.marshal()),
        key_certify=SignedAttest(attest=certify.attest, signature=certify.signature),
    )
    return Evidence(request, key, attest)


IMA_PCRS = range(10, 24)  # IMA's default 10 and the PCRs a pcr= rule may name (not 0-9)


def ima_list(configured: Path | None, selection: PcrSelection) -> tuple[Path | None, str]:
    """The IMA list to send and its template-hash bank: the per-bank list
    (``binary_runtime_measurements_<bank>``) of the first quoted bank that has one beside
    the configured list, else the configured list itself (SHA-1, or the bank its name
    says). Old kernels have only the SHA-1 list; the attestor replays either."""
    if configured is None:
        return None, "sha1"
    named = bank_of_file(configured.name)
    if configured.name == LIST_FILE:
        for bank, _ in selection.banks:
            candidate = configured.with_name(list_file_for(bank)) \
                if bank in LIST_BANKS else None
            if candidate is not None and candidate.exists():
                return candidate, bank
    return configured, named or "sha1"


def _ima_batch(config: AgentConfig, reset_count: int, selection: PcrSelection,
               progress: ImaProgress | None) -> tuple[int, bytes | None, str]:
    """The IMA entries to send and their bank: only the new ones when the attestor's
    record of this boot's list is current (same TPM reset count), else the whole list.
    Read after the quote, so the list covers at least what the IMA PCRs hold.

    ``reset_count`` comes from our own quote, not TPM2_ReadClock: quotes by an AK in
    the storage hierarchy carry an obfuscated (but consistent) resetCount."""
    if not any(i in IMA_PCRS for _, idx in selection.banks for i in idx):
        return 0, None, "sha1"
    path, bank = ima_list(config.ima_log, selection)
    data = read_event_log(path)
    if data is None:
        return 0, None, "sha1"
    listing = parse_binary(data, bank)
    if progress is not None:
        accepted = progress.accepted_entries
        if progress.reset_count == reset_count and 0 < accepted <= len(listing.entries):
            return accepted, listing.tail(data, accepted), bank
    return 0, listing.tail(data, 0), bank


def _secret_value(secret: GrantedSecret, tpm: Tpm | None, config: AgentConfig,
                  unwrapped: dict[str, bytes]) -> bytes:
    """A granted secret's value; a TPM-wrapped one is opened by this device's TPM, a
    Vault-wrapped one was unwrapped at Vault (``unwrapped``)."""
    if secret.vault_wrap is not None:
        return unwrapped[secret.name]
    wrapped = secret.tpm_wrap
    if wrapped is None:
        if secret.value is None:
            raise MalformedAnswer(f"secret {secret.name!r} comes without its value")
        return secret.value
    if tpm is None:
        raise MalformedAnswer("a TPM-wrapped secret needs the TPM to open it")
    sealed = TpmWrap(wrapped.credential_blob, wrapped.encrypted_secret, wrapped.iv,
                     wrapped.ciphertext)
    key = tpm.activate_credential(sealed.credential_blob, sealed.encrypted_secret,
                                  config.ak_handle)
    try:
        return unwrap(sealed, key, name=secret.name, version=secret.version,
                      device_id=str(config.device_id))
    except TpmWrapInvalid as exc:
        raise MalformedAnswer(str(exc)) from exc


def install_result(config: AgentConfig, key: TSSPrivKey, result: AttestationResult,
                   now: dt.datetime, tpm: Tpm | None = None,
                   unwrapped: dict[str, bytes] | None = None) -> Issued:
    """Check the issued certificate against our key and CA, then install the set."""
    ca_pem = (config.state_dir / CA_FILE).read_text()
    try:
        cert = check_issued(result.certificate, result.chain, ca_pem,
                            workload_public_key(key), now)
        serial = result.serial
        secrets = [(s.name, _secret_value(s, tpm, config, unwrapped or {}))
                   for s in result.secrets]
    except (KeyError, ValueError) as exc:
        raise MalformedAnswer(f"the attestation result is incomplete: {exc!r}") from exc
    if not _SAFE_NAME.fullmatch(serial) or not all(
            all(_SAFE_NAME.fullmatch(part) for part in name.split("/")) for name, _ in secrets):
        raise MalformedAnswer("the attestation result names an unsafe file")
    files: dict[str, tuple[bytes, int]] = {
        "cert.pem": (result.certificate.encode(), config.cert_mode),
        "chain.pem": (result.chain.encode(), config.cert_mode),
        "key.pem": (key.to_pem(), config.key_mode),
        RESULT_FILE: (json.dumps(_result_summary(result), indent=2).encode(), config.cert_mode),
    }
    if result.token:  # the attestation-result token, for local relying parties
        files[TOKEN_FILE] = (result.token.encode(), config.cert_mode)
    for name, value in secrets:
        files[f"secrets/{name}"] = (value, config.key_mode)
    install_set(config.output, serial, files)
    issued = Issued(
        serial=serial,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject_uri=_uri(cert),
        secrets=tuple(name for name, _ in secrets),
    )
    write_status(config.state_dir, {
        "last_verdict": "pass", "reasons": [], "at": now.isoformat(), "device_state": "active",
        "last_renewal": now.isoformat(), "failures": 0, "last_error": None,
        "serial": issued.serial, "not_after": issued.not_after.isoformat(),
        "renew_at": issued.renew_at(config.renew_fraction).isoformat(),
        "warnings": list(result.warnings),
    })
    return issued


def _result_summary(result: AttestationResult) -> dict[str, object]:
    """What local workloads may read about the last attestation (no secret values)."""
    values = to_json(result)
    summary = {name: values[name] for name in (
        "device_id", "verdict", "serial", "not_before", "not_after", "policy", "warnings")}
    summary["checks"] = [{"name": c.get("name"), "passed": c.get("passed")}
                         for c in result.checks]
    return summary


def note_tpm_reset(state_dir: Path, attest: bytes) -> bool:
    """Record the TPM's reset count from our quote; True when it changed since the last
    attestation (a reboot or TPM reset: the attestor gets the full event log and IMA
    list, and sees the new boot)."""
    reset_count = parse_attest(attest).reset_count
    previous = read_status(state_dir).get("tpm_reset_count")
    if previous == reset_count:
        return False
    write_status(state_dir, {"tpm_reset_count": reset_count})
    if previous is not None:
        log.info("TPM reset detected (reset count changed): sending the full event log and "
                 "IMA list")
    return previous is not None


def _check_challenge(challenge: Challenge) -> None:
    """What the model cannot say: a nonce long enough, a PCR selection that parses."""
    try:
        if len(challenge.nonce) < 16:
            raise ValueError("nonce shorter than 16 bytes")
        PcrSelection.of(challenge.pcr_selection)
    except (ValueError, MalformedInput) as exc:
        raise MalformedAnswer(f"the challenge is malformed: {exc!r}") from exc


def _attest(config: AgentConfig, tpm: Tpm, client: AttestorClient, device_id: str,
            now: dt.datetime) -> Issued:
    challenge = client.challenge(device_id)
    _check_challenge(challenge)
    evidence = collect_evidence(config, tpm, device_id, challenge)
    note_tpm_reset(config.state_dir, evidence.attest)
    try:
        result = client.attest(device_id, evidence.body)
    except AttestorError as exc:
        if exc.codes != ["ima.state_invalid"]:
            raise
        # The attestor cannot continue our IMA list where it thinks it stopped: send it all.
        challenge = client.challenge(device_id)
        evidence = collect_evidence(config, tpm, device_id, challenge, full_ima=True)
        result = client.attest(device_id, evidence.body)
    unwrapped = vaultwrap.resolve(result, client, device_id, config.vault_ca_bundle,
                                  time.monotonic())
    return install_result(config, evidence.key, result, now, tpm, unwrapped)


def _uri(cert: x509.Certificate) -> str:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else ""


def read_status(state_dir: Path) -> dict[str, Any]:
    try:
        status = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def write_status(state_dir: Path, update: dict[str, object]) -> None:
    status = read_status(state_dir)
    status.update(update)
    atomic_write(state_dir / STATUS_FILE, json.dumps(status, indent=2).encode())


def current_certificate(state_dir: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate((state_dir / "cert.pem").read_bytes())
    except (OSError, ValueError):
        return None
