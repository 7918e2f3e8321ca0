"""Appraisal of what booted (a :class:`BootSummary`) against a device class's boot policy.

Every rule is its own check with a stable code; an unknown value (say, no
SecureBoot variable in the log) fails a rule that needs it. ``learn_boot``
writes the policy a known-good device's log implies.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from identity.checks import CheckRunner
from identity.errors import (
    BankMissing,
    CmdlineRejected,
    DbxOutdated,
    KernelNotAllowed,
    SbatLevelRejected,
    SecureBootDisabled,
    SignatureDatabaseNotAllowed,
    UnknownBootApplication,
)
from identity.eventlog.summary import BootSummary
from identity.eventlog.tcg import EventLog


class BootPolicy(BaseModel):
    """What a device class may boot. ``None`` for a list means "not checked"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required_banks: tuple[str, ...] = Field(("sha256",), description="banks the log must carry")
    digest_bank: str = Field("sha256", description="bank of the boot-application digests")
    secure_boot: bool = Field(True, description="Secure Boot must be on")
    pk: tuple[str, ...] | None = Field(None, description="allowed PK (SHA-256 fingerprints)")
    kek: tuple[str, ...] | None = Field(None, description="allowed KEK entries")
    db: tuple[str, ...] | None = Field(None, description="allowed db entries")
    dbx_must_contain: tuple[str, ...] = Field((), description="revocations dbx must hold")
    boot_applications: tuple[str, ...] | None = Field(
        None, description="allowed boot applications (Authenticode digests, hex)")
    kernels: tuple[str, ...] | None = Field(None, description="allowed kernel paths")
    cmdline_required: tuple[str, ...] = Field((), description="arguments the cmdline must have")
    cmdline_forbidden: tuple[str, ...] = Field((), description="arguments it must not have")
    sbat_levels: tuple[str, ...] | None = Field(None, description="allowed SBAT levels")


def _subset(policy_list: tuple[str, ...] | None, found: list[str]) -> list[str]:
    if policy_list is None:
        return []
    allowed = set(policy_list)
    return [value for value in found if value not in allowed]


def appraise_boot(runner: CheckRunner, policy: BootPolicy, log: EventLog,
                  summary: BootSummary) -> None:
    """Record one check per rule of ``policy`` (``boot.*``)."""
    missing_banks = [b for b in policy.required_banks if b not in log.banks]
    runner.record("boot.banks", None if not missing_banks else BankMissing(
        f"the event log lacks the {', '.join(missing_banks)} bank(s)"))
    if policy.secure_boot:
        runner.record("boot.secure_boot", None if summary.secure_boot else SecureBootDisabled(
            "Secure Boot is off" if summary.secure_boot is False
            else "the log holds no SecureBoot variable measurement"))
    bad_databases = []
    for name, allowed in (("PK", policy.pk), ("KEK", policy.kek), ("db", policy.db)):
        if allowed is not None and name not in summary.databases:
            bad_databases.append(f"{name} was not measured")
        extra = _subset(allowed, summary.fingerprints(name))
        if extra:
            bad_databases.append(f"{name} holds {len(extra)} entries outside the policy "
                                 f"({extra[0][:16]}…)")
    runner.record("boot.signature_databases", None if not bad_databases else
                  SignatureDatabaseNotAllowed("; ".join(bad_databases)))
    if policy.dbx_must_contain:
        have = set(summary.fingerprints("dbx"))
        lacking = [h for h in policy.dbx_must_contain if h not in have]
        runner.record("boot.dbx", None if not lacking else DbxOutdated(
            f"dbx lacks {len(lacking)} required revocation(s), e.g. {lacking[0][:16]}…"))
    if policy.boot_applications is not None:
        allowed_apps = set(policy.boot_applications)
        unknown = [a for a in summary.boot_applications
                   if a.digests.get(policy.digest_bank) not in allowed_apps]
        runner.record("boot.applications", None if not unknown else UnknownBootApplication(
            "; ".join(f"event {a.event}: {a.path or '(no path)'} "
                      f"{a.digests.get(policy.digest_bank, '')[:16]}…" for a in unknown[:5])))
    if policy.kernels is not None:
        runner.record("boot.kernel", None if summary.kernel in policy.kernels else
                      KernelNotAllowed(f"kernel {summary.kernel or '(none measured)'} is not "
                                       "allowed"))
    _cmdline(policy, summary, runner)
    if policy.sbat_levels is not None:
        runner.record("boot.sbat", None if summary.sbat_level in policy.sbat_levels else
                      SbatLevelRejected(f"SBAT level {summary.sbat_level!r} is not allowed"))


def _cmdline(policy: BootPolicy, summary: BootSummary, runner: CheckRunner) -> None:
    if not policy.cmdline_required and not policy.cmdline_forbidden:
        return
    args = (summary.cmdline or "").split()
    problems = [f"missing {a!r}" for a in policy.cmdline_required if a not in args]
    problems += [f"forbidden {a!r}" for a in args if a in policy.cmdline_forbidden
                 or a.split("=", 1)[0] in policy.cmdline_forbidden]
    if summary.cmdline is None:
        problems.insert(0, "no kernel command line was measured")
    runner.record("boot.cmdline", None if not problems else CmdlineRejected(
        "kernel command line: " + "; ".join(problems)))


def learn_boot(log: EventLog, summary: BootSummary, digest_bank: str = "sha256") -> BootPolicy:
    """The strict policy a known-good boot implies: exactly its keys, apps and kernel."""
    return BootPolicy(
        required_banks=(digest_bank,) if digest_bank in log.banks else log.banks[:1],
        digest_bank=digest_bank if digest_bank in log.banks else log.banks[0],
        secure_boot=bool(summary.secure_boot),
        pk=tuple(summary.fingerprints("PK")) if "PK" in summary.databases else None,
        kek=tuple(summary.fingerprints("KEK")) if "KEK" in summary.databases else None,
        db=tuple(summary.fingerprints("db")) if "db" in summary.databases else None,
        dbx_must_contain=tuple(summary.fingerprints("dbx")),
        boot_applications=tuple(dict.fromkeys(
            a.digests[digest_bank] for a in summary.boot_applications
            if digest_bank in a.digests)),
        kernels=(summary.kernel,) if summary.kernel else None,
        sbat_levels=(summary.sbat_level,) if summary.sbat_level else None,
    )
