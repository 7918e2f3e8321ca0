"""Pydantic v2 strict twins of the attestation request and result (what identity/messages.py
was before msgspec), for bench/messages.py only: frozen, strict, requests forbid unknown
fields, answers ignore them, bytes as standard base64."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from attestor.models.operator import B64, StructB64  # the operator API's base64 types

MAX_LOG_B64 = 4 * 1024 * 1024

LogB64 = Annotated[B64, Field(max_length=MAX_LOG_B64, json_schema_extra={"format": "byte"})]


ImaBank = Literal["sha1", "sha256", "sha384", "sha512", "sm3_256"]



class Request(BaseModel):
    """What a client sends: nothing unknown, nothing coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Answer(BaseModel):
    """What the attestor answers: unknown fields ignored (a newer attestor), else strict."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class SignedAttest(Request):
    """A TPMS_ATTEST exactly as the TPM produced it, and its TPMT_SIGNATURE."""

    attest: StructB64
    signature: StructB64


class ImaProgress(Answer):
    """How much of the device's IMA list the attestor has accepted since the TPM's last
    reset: the agent sends entries from ``accepted_entries`` on while ``reset_count``
    still matches its TPM, else the whole list."""

    accepted_entries: int
    reset_count: int


class AttestationRequest(Request):
    nonce: Annotated[B64, Field(max_length=64)]
    quote: SignedAttest
    pcrs: dict[str, dict[str, str]] = Field(description='{"sha256": {"0": "<hex>", ...}}')
    event_log: LogB64 | None = Field(None, description="binary TCG measured-boot log")
    ima_log: LogB64 | None = Field(
        None, description="IMA binary measurement list, from entry `ima_start` on")
    ima_bank: ImaBank = Field(
        "sha1", description="bank of the IMA list's template hashes: sha1 for "
        "binary_runtime_measurements, the bank for binary_runtime_measurements_<bank>")
    ima_start: int = Field(0, ge=0, description="index of the first IMA entry sent "
                           "(0: the whole list since boot)")
    csr: StructB64 = Field(description="PKCS#10 request (DER) signed by the workload key")
    key_public: StructB64 = Field(description="TPM2B_PUBLIC of the workload key")
    key_certify: SignedAttest = Field(description="TPM2_Certify of the workload key by the AK")
    ear_nonce: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_\-]{11,88}$",
        description="a relying party's nonce (base64url, 8-64 bytes) to put in the "
        "attestation-result token as eat_nonce")


class TpmWrapped(Answer):
    """A secret only the device's TPM can open (see identity/tpmwrap.py)."""

    credential_blob: B64 = Field(description="TPM2B_ID_OBJECT for TPM2_ActivateCredential")
    encrypted_secret: B64 = Field(description="TPM2B_ENCRYPTED_SECRET")
    iv: B64
    ciphertext: B64 = Field(description="AES-256-GCM under the activated key")


class VaultWrapped(Answer):
    """A single-use Vault response-wrapping token: the device unwraps it at ``address``
    (``sys/wrapping/unwrap``) and reads ``field`` of the KV secret. If Vault says the
    token is not valid before ``ttl_seconds`` have passed, someone used it first: report
    it to ``/v1/devices/{id}/secrets/wrap-reuse``."""

    token: str
    wrap_id: str = Field(description="hash of the token; what the audit log names")
    ttl_seconds: int
    address: str
    field: str


class GrantedSecret(Answer):
    name: str
    version: int
    value: B64 | None = Field(None, description="the value (absent when wrapped)")
    tpm_wrap: TpmWrapped | None = None
    vault_wrap: VaultWrapped | None = None


class PolicyRef(Answer):
    device_class: str
    version: int | None


class AttestationResult(Answer):
    device_id: str
    verdict: str
    checks: list[dict[str, Any]]
    warnings: list[str]
    policy: PolicyRef
    certificate: str
    chain: str
    ca: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    secrets: list[GrantedSecret]
    ima: ImaProgress | None = None
    ima_pending_entries: int = Field(0, description="IMA entries measured after the quote: "
                                     "sent again next time")
    token: str | None = Field(None, description="attestation-result token (EAR as a JWT, "
                              "ES256), bound to `certificate`; verify with identity.gate "
                              "against /.well-known/jwks.json")
