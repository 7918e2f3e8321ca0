"""`edgeproof-sim`: a restarted TPM keeps its port, so the agent's tcti stays valid, and
the `trust add` line `manufacture` prints works when pasted as it is."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.sim.swtpm import PORT_FILE, Manufacturer, SwtpmError, SwtpmProcess, free_port_pair
from agent.tpm.device import AK_HANDLE, Tpm

pytestmark = pytest.mark.tpm
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@contextmanager
def sim_run(state: Path, *args: str) -> Iterator[str]:
    """`edgeproof-sim run STATE` as a separate process; yields the TCTI it prints."""
    proc = subprocess.Popen([str(BIN / "edgeproof-sim"), "run", str(state), *args],  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("swtpm:"), (line, proc.stderr.read() if proc.stderr else "")
        yield line
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_restarted_tpm_keeps_its_port_and_the_agent_still_reaches_it(
        manufacturer: Manufacturer, tmp_path: Path) -> None:
    state = manufacturer.manufacture(tmp_path / "tpm")
    with sim_run(state) as tcti, Tpm(tcti) as tpm:  # what the agent's config names
        tpm.ensure_srk()
        ak = tpm.create_ak()
    with sim_run(state) as again, Tpm(tcti) as tpm:  # a new process, as after a reboot
        assert again == tcti
        assert tpm.read_public(AK_HANDLE) == ak
    assert (state / PORT_FILE).read_text().strip() == tcti.rsplit("=", 1)[1]


def test_a_taken_port_fails_clearly_instead_of_moving_the_tpm(
        manufacturer: Manufacturer, tmp_path: Path) -> None:
    state = manufacturer.manufacture(tmp_path / "tpm")
    first = SwtpmProcess(state).start()
    port = first.port
    first.stop()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(SwtpmError, match=f"port {port} is in use.*--port N"):
            SwtpmProcess(state).start()
        done = subprocess.run([str(BIN / "edgeproof-sim"), "run", str(state)],  # noqa: S603
                              capture_output=True, text=True, env=ENV, timeout=60, check=False)
    assert done.returncode == 1 and f"port {port} is in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_moves_only_on_purpose(manufacturer: Manufacturer, tmp_path: Path) -> None:
    state = manufacturer.manufacture(tmp_path / "tpm")
    chosen = free_port_pair()
    with sim_run(state, "--port", str(chosen)) as tcti:
        assert tcti == f"swtpm:host=127.0.0.1,port={chosen}"
    with sim_run(state) as tcti:
        assert tcti == f"swtpm:host=127.0.0.1,port={chosen}"


def test_the_printed_trust_add_line_works_when_pasted(tmp_path: Path) -> None:
    """Paths with spaces, and lines longer than a terminal: one shell-quoted line."""
    work = tmp_path / "a workshop with a long name to pass eighty columns"
    work.mkdir()
    initialised = subprocess.run([str(BIN / "attestor"), "init", "--dev"], cwd=work, env=ENV,  # noqa: S603
                                 capture_output=True, text=True, check=False)
    assert initialised.returncode == 0, initialised.stderr
    done = subprocess.run([str(BIN / "edgeproof-sim"), "manufacture", "my tpm",  # noqa: S603
                           "-m", "maker [test]"], cwd=work, env=ENV, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    hint = lines[lines.index("manufactured my tpm; trust the manufacturer with:") + 1]
    elsewhere = tmp_path / "elsewhere"  # pasted in another directory
    elsewhere.mkdir()
    pasted = subprocess.run(shlex.split(hint), cwd=elsewhere, env=ENV,  # noqa: S603
                            capture_output=True, text=True, check=False)
    assert pasted.returncode == 0, pasted.stderr
    assert "imported 2 of 2" in pasted.stdout
    trusted = sorted(p.name for p in (work / "attestor-data" / "trust" / "ek-roots").iterdir())
    assert trusted == ["issuercert.pem", "swtpm-localca-rootca-cert.pem"]
