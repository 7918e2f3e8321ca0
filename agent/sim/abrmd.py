"""A TPM resource manager in front of an emulated TPM, as ``/dev/tpmrm0`` is on a device.

swtpm has no resource manager: three transient object slots, and whatever a process
leaves loaded stays loaded. OpenSSL's TPM provider (device mTLS) opens its own TPM
connection beside the agent's and loads several objects per handshake, so on swtpm it
runs through Debian's ``tpm2-abrmd``, which virtualises objects and sessions per client.

:class:`SessionBus` is a private D-Bus session bus (``dbus-daemon --session``), so no
system bus or login session is needed. :class:`Abrmd` runs ``tpm2-abrmd --session`` on
it under its own bus name, connected to one swtpm; clients use :attr:`Abrmd.tcti`
(``tabrmd:bus_name=…,bus_type=session``) with ``DBUS_SESSION_BUS_ADDRESS`` set to
:attr:`SessionBus.address`. Several TPMs can share one bus.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tpm2_pytss import ESAPI, TCTILdr, TSS2_Exception

BUS_NAME_PREFIX = "com.intel.tss2.Tabrmd.edgeproof"
_names = itertools.count(1)


class AbrmdError(RuntimeError):
    pass


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise AbrmdError(f"{binary} not found: install {package} (scripts/sysdeps.sh)")
    return path


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@dataclass
class SessionBus:
    """A private D-Bus session bus listening on a socket in ``directory``."""

    directory: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"unix:path={self.directory / 'bus'}"

    def start(self, timeout: float = 10.0) -> SessionBus:
        binary = _require("dbus-daemon", "dbus-daemon (Debian package dbus-daemon)")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "bus").unlink(missing_ok=True)
        self.process = subprocess.Popen(  # noqa: S603
            [binary, "--session", "--nofork", "--nopidfile", f"--address={self.address}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not (self.directory / "bus").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AbrmdError("dbus-daemon --session did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def env(self) -> dict[str, str]:
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}


@dataclass
class Abrmd:
    """``tpm2-abrmd`` between the clients and the TPM at ``tpm_tcti`` (a swtpm TCTI)."""

    bus: SessionBus
    tpm_tcti: str
    log: Path
    name: str = field(default_factory=lambda: f"{BUS_NAME_PREFIX}{os.getpid()}_{next(_names)}")
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def tcti(self) -> str:
        return f"tabrmd:bus_name={self.name},bus_type=session"

    # start() points this process's DBUS_SESSION_BUS_ADDRESS at the bus: tabrmd clients
    # (tpm2-pytss here, the TPM provider in a child) find abrmd through it.

    def start(self, timeout: float = 20.0) -> Abrmd:
        binary = _require("tpm2-abrmd", "tpm2-abrmd")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [binary, "--session", "--allow-root", f"--dbus-name={self.name}",
                 f"--tcti={self.tpm_tcti}"],
                env={**os.environ, **self.bus.env()}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        time.sleep(0.2)  # (a probe before it owns its bus name logs a GDBus warning)
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AbrmdError(f"tpm2-abrmd did not start; see {self.log}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        """Whether a client can reach the TPM through this abrmd (needs the bus address in
        this process's environment, as every tabrmd client does)."""
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = self.bus.address
        try:
            with ESAPI(TCTILdr("tabrmd", self.tcti.split(":", 1)[1])) as ectx:
                ectx.get_random(4)
            return True
        except TSS2_Exception:
            return False

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
