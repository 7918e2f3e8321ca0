"""Reference policy per device class: golden PCR values, granted secrets, certificate TTL.

A minimal appraisal: the quoted PCRs (already proven by the quote) must equal
the golden values learned from a known-good boot. Measured-boot appraisal of
the event log's contents builds on this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from identity.checks import CheckRunner
from identity.errors import MalformedInput, PolicyNoReference, PolicyPcrMismatch
from identity.eventlog.appraise import BootPolicy
from identity.ima.appraise import ImaPolicy
from identity.pcr import MAX_PCR, PcrSelection, PcrValues
from identity.tpm.structures import DIGEST_SIZES

DEFAULT_PCRS = tuple(range(8))


class GateRule(BaseModel):
    """When the gate API allows an action (``update:firmware/*``, ``workload:payments``)
    for a device of this class: minimum EAR status and claim tiers, maximum age of its
    last attestation. Actions no rule matches are denied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = Field(pattern=r"^[A-Za-z0-9:/_.*?\-]{1,128}$",
                        description="action pattern (shell-style wildcards)")
    minimum_status: Literal["affirming", "warning"] = "affirming"
    claims: dict[Literal["instance-identity", "hardware", "executables", "configuration",
                         "file-system"], Literal["affirming", "warning"]] = Field(
        default_factory=dict, description="per-claim minimum tiers")
    max_age_seconds: int = Field(3600, ge=10, le=30 * 86400,
                                 description="oldest last attestation accepted")


class PolicyDocument(BaseModel):
    """What an operator writes (or ``policy learn`` produces) for one device class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pcr_bank: str = Field("sha256", description="PCR bank the quote must cover")
    pcrs: tuple[int, ...] = Field(DEFAULT_PCRS, description="PCR indices to quote")
    golden: dict[int, str] = Field(
        default_factory=dict, description="PCR index -> expected value (hex)"
    )
    secrets: tuple[str, ...] = Field((), description="secret names released on a pass")
    tpm_bound_secrets: tuple[str, ...] = Field(
        (), description="of those, the ones delivered so that only the device's TPM can "
        "open them (MakeCredential to its EK, bound to its AK)")
    secret_tiers: dict[str, Literal["affirming", "warning"]] = Field(
        default_factory=dict, description="secret name -> the attestation result status it "
        "needs (affirming: withheld on a pass with warnings); unnamed secrets need a pass")
    cert_ttl_seconds: int | None = Field(
        None, ge=60, description="lifetime of issued certificates; the server default if unset"
    )
    require_event_log: bool = Field(True, description="refuse evidence without an event log")
    boot: BootPolicy | None = Field(None, description="measured-boot appraisal of the event log")
    ima: ImaPolicy | None = Field(None, description="IMA appraisal (its PCRs, 10 by default, "
                                   "must be quoted)")
    gates: tuple[GateRule, ...] = Field((), description="gate rules, first match wins")

    @field_validator("pcr_bank")
    @classmethod
    def _bank(cls, v: str) -> str:
        if v not in DIGEST_SIZES:
            raise ValueError(f"unknown PCR bank {v!r}")
        return v

    @field_validator("pcrs")
    @classmethod
    def _pcrs(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 0 <= i <= MAX_PCR for i in v):
            raise ValueError("pcrs must be a non-empty list of indices 0..23")
        return tuple(sorted(set(v)))

    @field_validator("golden")
    @classmethod
    def _golden(cls, v: dict[int, str]) -> dict[int, str]:
        for index, value in v.items():
            try:
                bytes.fromhex(value)
            except ValueError as exc:
                raise ValueError(f"golden PCR {index} is not hex") from exc
        return {i: value.lower() for i, value in v.items()}

    @model_validator(mode="after")
    def _golden_fits(self) -> PolicyDocument:
        unknown = set(self.tpm_bound_secrets) - set(self.secrets)
        if unknown:
            raise ValueError(f"tpm_bound_secrets not granted in secrets: {sorted(unknown)}")
        unknown = set(self.secret_tiers) - set(self.secrets)
        if unknown:
            raise ValueError(f"secret_tiers names secrets not granted: {sorted(unknown)}")
        if self.ima is not None and not set(self.ima.pcrs) <= set(self.pcrs):
            raise ValueError(f"an IMA policy needs its PCRs {list(self.ima.pcrs)} in pcrs")
        if self.boot is not None:
            # What the boot policy judges must be proven by the quote.
            needed = {4, 7} | ({8} if self.boot.kernels is not None or self.boot.cmdline_required
                               or self.boot.cmdline_forbidden else set())
            if not needed <= set(self.pcrs):
                raise ValueError(f"a boot policy needs PCRs {sorted(needed)} in pcrs")
        size = DIGEST_SIZES[self.pcr_bank]
        for index, value in self.golden.items():
            if index not in self.pcrs:
                raise ValueError(f"golden value for PCR {index}, which is not quoted")
            if len(bytes.fromhex(value)) != size:
                raise ValueError(f"golden PCR {index} is not a {self.pcr_bank} digest")
        return self

    def required_selection(self) -> PcrSelection:
        return PcrSelection.of({self.pcr_bank: self.pcrs})

    @property
    def appraises_logs(self) -> bool:
        return self.boot is not None or self.ima is not None


def parse_policy(document: Mapping[str, Any]) -> PolicyDocument:
    try:
        return PolicyDocument.model_validate(document)
    except ValueError as exc:
        raise MalformedInput(f"policy document: {exc}") from exc


def evaluate_pcrs(policy: PolicyDocument, values: PcrValues) -> None:
    """Every PCR with a golden value must equal it; all differences are named.

    Without a boot or IMA appraisal, every quoted PCR needs a golden value; with one,
    the logs (replayed to the quote) stand for the PCRs that have none.
    """
    if not policy.golden and not policy.appraises_logs:
        raise PolicyNoReference(
            "the policy holds no golden PCR values yet (learn them from a known-good boot)"
        )
    bank = values.get(policy.pcr_bank, {})
    differing = [
        i for i, want in sorted(policy.golden.items()) if bank.get(i, b"").hex() != want
    ]
    missing = [i for i in policy.pcrs if i not in policy.golden]
    if missing and not policy.appraises_logs:
        raise PolicyNoReference(f"no golden value for quoted PCRs {missing}")
    if differing:
        raise PolicyPcrMismatch(
            f"{policy.pcr_bank} PCR {', '.join(map(str, differing))} differ from the reference"
        )


def learn(base: PolicyDocument, values: PcrValues) -> PolicyDocument:
    """A new document whose golden values are the (verified) quoted PCRs."""
    bank = values.get(base.pcr_bank) or {}
    missing = [i for i in base.pcrs if i not in bank]
    if not bank or (missing and not base.appraises_logs):
        raise MalformedInput(f"evidence lacks the {base.pcr_bank} PCRs {missing}")
    golden = {i: bank[i].hex() for i in base.pcrs if i in bank}
    return base.model_copy(update={"golden": golden})


def verify_pcrs(runner: CheckRunner, policy: PolicyDocument, values: PcrValues) -> bool:
    """:func:`evaluate_pcrs` as the appraisal's check ``policy.pcrs``; whether it passed."""
    return runner.check("policy.pcrs", lambda: evaluate_pcrs(policy, values))
