"""Emulated hardware: manufacture swtpm TPMs with EK certificates and run them.

A :class:`Manufacturer` is swtpm's local CA kept in its own directory (via
``XDG_CONFIG_HOME``), so each test or demo has its own "TPM vendor" whose root
the attestor must trust: the EK chain is really checked. A
:class:`SwtpmProcess` runs one TPM on a pair of TCP ports; stop() terminates, then kills.

A TPM keeps its ports for life, as a device keeps its TPM: the first start picks a
free pair and records it in the state directory (``swtpm.port``), every later start
(a restart, another ``edgeproof-sim run``) listens there again, so an agent's
``tcti`` stays valid. If the port is taken the start fails and says so; it never
moves the TPM elsewhere behind the agent's back (``--port`` moves it on purpose).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SWTPM = "swtpm"
SWTPM_SETUP = "swtpm_setup"
PORT_FILE = "swtpm.port"  # in the state directory: the port this TPM listens on


class SwtpmError(RuntimeError):
    pass


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SwtpmError(f"{binary} not found: install swtpm and swtpm-tools (`make demo` does)")
    return path


@dataclass(frozen=True)
class Manufacturer:
    """A test TPM manufacturer: a local CA that signs EK certificates."""

    directory: Path

    @property
    def ca_dir(self) -> Path:
        return self.directory / "var" / "lib" / "swtpm-localca"

    @property
    def root_certificate(self) -> Path:
        return self.ca_dir / "swtpm-localca-rootca-cert.pem"

    @property
    def intermediate_certificate(self) -> Path:
        return self.ca_dir / "issuercert.pem"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "XDG_CONFIG_HOME": str(self.directory)}

    def _setup(self, *args: str) -> None:
        cmd = [_require(SWTPM_SETUP), "--tpm2", *args]
        proc = subprocess.run(cmd, env=self._env(), capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise SwtpmError(f"swtpm_setup failed ({proc.returncode}): {proc.stderr[-400:]}")

    def ensure_config(self) -> None:
        """swtpm_setup's configuration and the manufacturer's CA (root and intermediate)."""
        scratch = self.directory / ".scratch-tpm"
        if not (self.directory / "swtpm_setup.conf").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            scratch.mkdir(exist_ok=True)
            self._setup("--tpmstate", str(scratch), "--create-config-files", "overwrite,root")
        if not self.root_certificate.exists():
            # swtpm_localca creates its CA on first use: manufacture one throwaway TPM.
            self.manufacture(scratch)
            shutil.rmtree(scratch, ignore_errors=True)

    def manufacture(self, state_dir: Path, *, ecc: bool = False,
                    banks: tuple[str, ...] = ("sha256",)) -> Path:
        """A new TPM in ``state_dir`` with an EK certificate (RSA-2048, or ECC P-384)."""
        if not (self.directory / "swtpm_setup.conf").exists():
            self.ensure_config()
        state_dir.mkdir(parents=True, exist_ok=True)
        args = ["--tpmstate", str(state_dir), "--create-ek-cert", "--create-platform-cert",
                "--overwrite", "--pcr-banks", ",".join(banks)]
        if ecc:
            args.append("--ecc")
        self._setup(*args)
        return state_dir


def free_port_pair() -> int:
    """A port P such that P and P+1 are both free (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise SwtpmError("no free port pair for swtpm")


def recorded_port(state_dir: Path) -> int:
    """The port this TPM listened on before (0: none recorded)."""
    try:
        text = (state_dir / PORT_FILE).read_text().strip()
    except FileNotFoundError:
        return 0
    if not text.isdigit() or not 1 <= int(text) < 65535:
        raise SwtpmError(f"{state_dir / PORT_FILE} holds {text[:20]!r}, not a port: remove "
                         "it (a free port is then chosen) or start with --port")
    return int(text)


def _check_free(port: int, state_dir: Path) -> None:
    for candidate in (port, port + 1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError as exc:
                raise SwtpmError(
                    f"port {candidate} is in use ({exc.strerror}): the TPM in {state_dir} "
                    f"listens on {port} and {port + 1} (recorded in {PORT_FILE}) so that "
                    "agents' tcti stays valid; stop what holds the port, or start it with "
                    "--port N and set the agent's tcti to swtpm:host=127.0.0.1,port=N"
                ) from exc


@dataclass
class SwtpmProcess:
    """One swtpm. ``port`` 0: the port recorded in ``state_dir``, else a free one."""

    state_dir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self, timeout: float = 10.0) -> SwtpmProcess:
        binary = _require(SWTPM)
        pinned = self.port or recorded_port(self.state_dir)
        for _ in range(5):
            if pinned:
                self.port = pinned
                _check_free(pinned, self.state_dir)
            else:  # first start: a free pair (another process may take it first: retry)
                self.port = free_port_pair()
            log = open(self.state_dir / "swtpm.log", "ab")  # noqa: SIM115 - owned by the child
            self.process = subprocess.Popen(  # noqa: S603
                [binary, "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}",
                 "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                 "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                 "--flags", "not-need-init,startup-clear"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
            log.close()
            if self._wait_ready(timeout):
                (self.state_dir / PORT_FILE).write_text(f"{self.port}\n")
                return self
            self.stop()
        raise SwtpmError(f"swtpm did not start; see {self.state_dir / 'swtpm.log'}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=0.2
            ):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Terminate swtpm (it saves its state), then kill it if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> SwtpmProcess:
        """Power-cycle: a new swtpm process on the same state (PCRs reset, resetCount+1)."""
        self.stop()
        return self.start()

    def __enter__(self) -> SwtpmProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
