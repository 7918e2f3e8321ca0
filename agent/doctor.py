"""`edge-agent doctor`: is this device able to attest, and if not, what to fix.

Each check reports ok, warn or fail with a one-line detail and, when not ok, a
hint saying what to do. The TPM checks share one connection; a check that
cannot run because an earlier one failed says so instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig

if TYPE_CHECKING:
    from agent.tpm.device import Tpm
    from identity.messages import DevicePublic

# asks the attestor for this device's record, with a request the TPM's DevID signs
RecordProbe = Callable[["Tpm"], "DevicePublic"]

OK, WARN, FAIL = "ok", "warn", "fail"
# No device can be attested with a clock before this (the release of this agent).
EARLIEST_SANE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MAX_SKEW_SECONDS = 120


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def run_checks(config: AgentConfig, now: dt.datetime,
               attestor_clock: Callable[[], dt.datetime | None] | None = None,
               attestor_record: RecordProbe | None = None) -> list[Check]:
    """Every check, in the order a person would fix them. ``attestor_clock`` asks the
    attestor for its time, ``attestor_record`` for this device's enrolled keys (None: do
    not contact it)."""
    checks = [_state_dir(config), *_credential_modes(config)]
    checks.extend(_tpm_checks(config, attestor_record))
    checks.extend(_event_logs(config))
    reach, theirs = _attestor(config, attestor_clock)
    checks.append(reach)
    checks.append(_clock(now, theirs))
    return checks


def _attestor(config: AgentConfig, probe: Callable[[], dt.datetime | None] | None,
              ) -> tuple[Check, dt.datetime | None]:
    if probe is None:
        return _ok("attestor", "not contacted (--offline)"), None
    try:
        theirs = probe()
    except Exception as exc:  # noqa: BLE001 (reported, not raised)
        return Check("attestor", FAIL, str(exc),
                     "check attestor_url(s), ca_bundle, DNS and the network path"), None
    return _ok("attestor", f"{' or '.join(config.urls)} answers"), theirs


def _state_dir(config: AgentConfig) -> Check:
    path = config.state_dir
    try:
        info = path.stat()
    except OSError as exc:
        return Check("state_dir", FAIL, f"{path}: {exc.strerror}",
                     f"create it: install -d -m 0700 -o $(id -un) {path}")
    if not stat.S_ISDIR(info.st_mode):
        return Check("state_dir", FAIL, f"{path} is not a directory", "remove it and re-provision")
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        return Check("state_dir", FAIL, f"{path} belongs to uid {info.st_uid}, not to the "
                     f"agent (uid {os.geteuid()})", f"chown -R $(id -un) {path}")
    if mode & 0o077:
        return Check("state_dir", FAIL, f"{path} has mode 0{mode:o}: others can reach the "
                     "device's credentials", f"chmod 0700 {path}")
    if not os.access(path, os.W_OK):
        return Check("state_dir", FAIL, f"{path} is not writable", f"chmod u+w {path}")
    return _ok("state_dir", f"{path} (0{mode:o})")


def _credential_modes(config: AgentConfig) -> list[Check]:
    live = config.output / "current"
    if not live.exists():
        return [Check("credentials", WARN, "no credential set installed yet",
                      "run `edge-agent attest --once` (after `edge-agent provision`)")]
    loose = []
    for path in [live / "key.pem", *sorted((live / "secrets").rglob("*"))]:
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) & 0o037:
            loose.append(f"{path.name} 0{stat.S_IMODE(path.stat().st_mode):o}")
    if loose:
        return [Check("credentials", FAIL, "private files readable by others: "
                      + ", ".join(loose), f"chmod 0600 {live}/key.pem {live}/secrets/*")]
    return [_ok("credentials", f"{live.resolve().name}: keys and secrets 0600")]


def _tpm_checks(config: AgentConfig, record: RecordProbe | None) -> list[Check]:
    from tpm2_pytss import TSS2_Exception

    from agent.doctor_keys import enrollment
    from agent.tpm.device import Tpm, TpmError

    try:
        tpm = Tpm(config.tcti)
    except TpmError as exc:
        hint = ("check the TCTI (tcti = ...) and that the TPM, swtpm or tpm2-abrmd is running"
                "; for device: the agent's user needs the tss group")
        blocked = "not checked: the TPM is unreachable"
        return [Check("tpm", FAIL, str(exc), hint),
                Check("ek_certificate", FAIL, blocked, "fix the tpm check first"),
                Check("persistent_objects", FAIL, blocked, "fix the tpm check first"),
                Check("enrollment", FAIL, blocked, "fix the tpm check first")]
    with tpm:
        checks = [_ok("tpm", f"reachable at {config.tcti}")]
        try:
            endorsement = tpm.endorsement()
        except (TpmError, TSS2_Exception) as exc:
            checks.append(Check("ek_certificate", FAIL, f"EK cannot be created: {exc}",
                                "the TPM may be in failure mode or its endorsement hierarchy "
                                "disabled; check firmware settings"))
        else:
            if endorsement.certificate:
                checks.append(_ok("ek_certificate", f"{endorsement.ek_type} certificate in NV"
                                  f" ({len(endorsement.certificate)} bytes)"))
            else:
                checks.append(Check("ek_certificate", WARN, "no EK certificate in the TPM's NV",
                                    "enrollment then needs the manufacturer to pre-register "
                                    "this TPM's EK public key with the attestor"))
        checks.append(_persistent(config, tpm))
        checks.append(enrollment(config, tpm, record))
    return checks


def _persistent(config: AgentConfig, tpm: Tpm) -> Check:
    wanted = {"SRK": config.srk_handle, "AK": config.ak_handle, "DevID": config.devid_handle}
    missing = [f"{name} 0x{handle:08x}" for name, handle in wanted.items()
               if not tpm.has(handle)]
    if not config.device_id:
        return Check("persistent_objects", FAIL, "the device is not provisioned",
                     "run `edge-agent provision --attestor URL` at the factory station")
    if missing:
        return Check("persistent_objects", FAIL, "missing: " + ", ".join(missing),
                     "the TPM was cleared or the handles changed; the device must be "
                     "provisioned again (`edge-agent provision --force`)")
    return _ok("persistent_objects", ", ".join(f"{n} 0x{h:08x}" for n, h in wanted.items()))


# securityfs files are root-only (0440) by default and do not keep a chmod across boots
_GRANT = ("run the agent as root, or let its group (tss in the shipped systemd unit) read "
          "it at every boot with a systemd-tmpfiles line: z {path} 0440 root tss")


def _event_logs(config: AgentConfig) -> list[Check]:
    """The logs the attestor replays: without them the first attestation fails
    `eventlog.missing` (README, "Where the agent finds the event logs")."""
    return [
        _readable("event_log", config.event_log, "a TCG event log",
                  "set event_log (agent.toml or EDGE_AGENT_EVENT_LOG) to the firmware's TCG "
                  "log; on Linux /sys/kernel/security/tpm0/binary_bios_measurements, present "
                  "when securityfs is mounted (mount -t securityfs securityfs "
                  "/sys/kernel/security) and the firmware hands the kernel a TPM 2.0 log",
                  unset=Check("event_log", WARN, "not configured: nothing is sent, and a "
                              "policy that checks the boot refuses with eventlog.missing",
                              "set event_log (agent.toml or EDGE_AGENT_EVENT_LOG)")),
        _readable("ima_log", config.ima_log, "an IMA measurement list",
                  "set ima_log (agent.toml or EDGE_AGENT_IMA_LOG) to the IMA list, "
                  "/sys/kernel/security/ima/binary_runtime_measurements with IMA enabled "
                  "(boot with ima_policy=tcb), or ima_log = \"\" to send none"),
    ]


def _readable(name: str, path: Path | None, what: str, hint: str,
              unset: Check | None = None) -> Check:
    if path is None or str(path) in ("", "."):
        return unset or _ok(name, "not configured (not sent)")
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except PermissionError as exc:
        grant = f"{path}*" if name == "ima_log" else str(path)
        return Check(name, FAIL, f"{path}: {exc.strerror or exc} (uid {os.geteuid()})",
                     _GRANT.format(path=grant))
    except OSError as exc:
        return Check(name, FAIL, f"{path}: {exc.strerror or exc}", hint)
    if not head:
        return Check(name, FAIL, f"{path} is empty, not {what}", hint)
    return _ok(name, f"{path} readable")


def _clock(now: dt.datetime, theirs: dt.datetime | None) -> Check:
    if now < EARLIEST_SANE:
        return Check("clock", FAIL, f"the system clock says {now:%Y-%m-%d %H:%M} UTC",
                     "set the time (enable NTP: timedatectl set-ntp true); certificates and "
                     "signed requests depend on it")
    if theirs is None:
        return _ok("clock", f"{now:%Y-%m-%d %H:%M:%S} UTC")
    skew = (now - theirs).total_seconds()
    if abs(skew) > MAX_SKEW_SECONDS:
        return Check("clock", FAIL, f"{skew:+.0f} s from the attestor's clock",
                     "enable NTP (timedatectl set-ntp true); the attestor refuses signed "
                     "requests more than a few minutes off")
    return _ok("clock", f"{skew:+.0f} s from the attestor's clock")
