"""Models of the operator API's trust-store and policy-learning endpoints (the operations
that were once only local commands: ``attestor trust list/add``, ``policy learn``)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from attestor.models.common import Request
from attestor.models.operator import B64, Label, PolicyVersion

# A known-good firmware log is tens of kilobytes; an IMA list of a whole system a few
# megabytes: both fit the API's body limit (max_body_bytes, 4 MiB by default) in base64.
MAX_LOG_BYTES = 3 * 1024 * 1024


class TrustCertificate(BaseModel):
    kind: Literal["root", "intermediate"]
    subject: str
    issuer: str
    not_after: dt.datetime
    sha256: str = Field(description="SHA-256 of the certificate (DER), hex")


class TrustFileProblem(BaseModel):
    source: str = Field(description="the file (or the submitted item) concerned")
    problem: str


class TrustStorePublic(BaseModel):
    """The EK trust store as the attestor answering holds it now."""

    certificates: list[TrustCertificate]
    re_encoded: list[str] = Field(default_factory=list, description="roots with non-DER "
                                  "names, trusted as re-encoded")
    not_loaded: list[TrustFileProblem] = Field(default_factory=list,
                                               description="files the store could not load")


class TrustAdd(Request):
    """TPM-vendor CA certificates to import: each item is one file's content (PEM or DER),
    base64-encoded; stored under a name derived from its digest."""

    certificates: list[B64] = Field(min_length=1, max_length=100,
                                    json_schema_extra={"items": {"format": "byte"}})


class TrustImport(BaseModel):
    imported: list[str] = Field(description="the stored files' names")
    refused: list[TrustFileProblem]


class PolicyLearn(Request):
    """What to learn a new policy version from: a known-good device's last verified
    attestation and/or known-good logs (at least one)."""

    device_id: Label | None = Field(None, description="device whose last verified "
                                    "attestation is known-good")
    golden: bool = Field(True, description="golden PCRs from that device's quote")
    event_log: B64 | None = Field(None, max_length=MAX_LOG_BYTES,
                                  description="a known-good firmware event log (binary)")
    ima_list: B64 | None = Field(None, max_length=MAX_LOG_BYTES,
                                 description="a known-good IMA measurement list")
    ima_ascii: bool = Field(False, description="the IMA list is the ASCII form")
    ima_bank: Literal["sha1", "sha256", "sha384", "sha512"] | None = Field(
        None, description="template-hash bank of a binary IMA list (default: guessed)")
    grant: list[Label] = Field(default_factory=list, max_length=100,
                                     description="also grant these secrets on a pass")


class PolicyLearned(BaseModel):
    policy: PolicyVersion
    attestation_id: int | None = Field(description="the attestation learned from")
    attested_at: dt.datetime | None
