"""Models of the operator API (devices, policies, certificates, pre-registration, audit)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from attestor.models.common import Request
from identity.messages import LABEL_PATTERN, MAX_STRUCT_B64
from identity.policy import PolicyDocument

T = TypeVar("T")


def _b64(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc


# The same text as the device protocol's (identity.messages, msgspec), in pydantic for
# the operator API: standard padded base64, labels and device classes.
B64 = Annotated[
    bytes,
    BeforeValidator(_b64),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str),
]
StructB64 = Annotated[B64, Field(max_length=MAX_STRUCT_B64, json_schema_extra={"format": "byte"})]
Label = Annotated[str, Field(min_length=1, max_length=128, pattern=LABEL_PATTERN)]
DeviceClass = Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL_PATTERN)]


class Page(BaseModel, Generic[T]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next (null: the end)."""

    items: list[T]
    next_cursor: str | None = None


class StateChange(Request):
    reason: str = Field(min_length=1, max_length=256, examples=["suspected compromise"])


class ClassChange(Request):
    device_class: DeviceClass


class AttestationPublic(BaseModel):
    id: int
    at: dt.datetime
    verdict: str
    reasons: list[str]
    checks: list[dict[str, Any]]
    warnings: list[str]
    policy_version: int | None
    quote_verified: bool
    evidence_sha256: str = Field(description="SHA-256 of the evidence as submitted")
    event_log_sha256: str | None = None
    certificate_serial: str | None


class PolicyVersion(BaseModel):
    device_class: str
    version: int
    document: dict[str, Any]
    created_at: dt.datetime
    created_by: str


class PolicyCreate(Request):
    document: PolicyDocument


class DryRun(BaseModel):
    device_id: str
    device_class: str
    version: int | None = Field(description="the version evaluated (null: the document given)")
    attestation_id: int
    verdict: str
    reasons: list[str]
    checks: list[dict[str, Any]]
    not_evaluated: list[str] = Field(default_factory=list,
                                     description="parts the stored evidence cannot answer")


class CertificatePublic(BaseModel):
    serial: str
    device_id: str
    kind: str
    status: str
    not_before: dt.datetime
    not_after: dt.datetime
    revoked_at: dt.datetime | None
    revoked_reason: str | None


class RevokeRequest(Request):
    reason: str = Field("unspecified", pattern=r"^(unspecified|key_compromise|superseded|"
                        r"cessation_of_operation|affiliation_changed|privilege_withdrawn)$")


class PreregistrationIn(Request):
    serial: Label
    model: Label | None = None
    device_class: DeviceClass = "default"
    ek_certificate: StructB64 | None = Field(None, description="EK certificate, DER")
    ek_public_key: B64 | None = Field(None, description="EK public key, SubjectPublicKeyInfo "
                                      "DER (when the TPM has no certificate)")


class PreregistrationBatch(Request):
    devices: list[PreregistrationIn] = Field(min_length=1, max_length=10_000)


class PreregistrationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    serial: str
    model: str | None
    device_class: str
    ek_key_sha256: str
    created_by: str
    created_at: dt.datetime
    enrolled_device_id: str | None
    enrolled_at: dt.datetime | None


class PreregistrationResult(BaseModel):
    created: int


class AuditPublic(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    action: str
    outcome: str
    device_id: str | None
    subject: str | None
    reasons: list[str]
    request_id: str | None
    client_address: str | None = None
    user_agent: str | None = None
    details: dict[str, Any]
    version: int = Field(description="hash format: 1 (mapped to today's vocabulary, the "
                         "replaced values in legacy) or 2")
    legacy: dict[str, Any] | None = None
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    ok: bool = Field(description="no entry or checkpoint was found tampered with")
    entries: int
    last_seq: int
    checkpoints: int
    anchored_seq: int = Field(description="entries up to here are proven by a signed "
                              "checkpoint")
    base_seq: int = Field(0, description="entries up to here were pruned (attestor audit "
                          "prune): the chain starts after the signed checkpoint here")
    unanchored_entries: int = Field(0, description="entries after the last valid "
                                    "checkpoint: chain-consistent, not proven (not verified)")
    unanchored_since: dt.datetime | None = Field(None, description="when the first "
                                                 "unanchored entry was written")
    problems: list[dict[str, Any]]
