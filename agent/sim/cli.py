"""`edgeproof-sim`: emulated hardware for development, demos and tests."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.sim.boot import TAMPERS

app = typer.Typer(help="Emulated edge hardware: swtpm TPMs with EK certificates and a "
                       "measured-boot simulator.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
out = Console()

Maker = Annotated[Path, typer.Option("--manufacturer", "-m",
                                     help="test TPM manufacturer directory (its CA)")]


@app.command()
def manufacture(
    state_dir: Annotated[Path, typer.Argument(help="where the new TPM's state goes")],
    manufacturer: Maker = Path("tpm-manufacturer"),
    ecc: Annotated[bool, typer.Option(help="also an ECC P-384 EK certificate")] = False,
) -> None:
    """Manufacture a TPM with EK certificates signed by the test manufacturer's CA."""
    from agent.sim.swtpm import Manufacturer

    maker = Manufacturer(manufacturer.resolve())
    maker.ensure_config()
    maker.manufacture(state_dir.resolve(), ecc=ecc)
    out.print(f"manufactured {state_dir}; trust the manufacturer with:\n"
              f"  attestor trust add {maker.root_certificate} {maker.intermediate_certificate}")


@app.command()
def run(state_dir: Annotated[Path, typer.Argument(help="a manufactured TPM's state")]) -> None:
    """Run the TPM on free local ports until interrupted; prints its TCTI."""
    from agent.sim.swtpm import SwtpmProcess

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with SwtpmProcess(state_dir.resolve()) as proc:
        out.print(proc.tcti)
        stop.wait()


@app.command()
def boot(
    tcti: Annotated[str, typer.Option(help="the TPM to boot, e.g. swtpm:host=...,port=...")],
    log: Annotated[Path, typer.Option(help="where to write the TCG event log")],
    tamper: Annotated[str | None, typer.Option(
        help="reproduce an attack: " + ", ".join(f"{k} ({v})" for k, v in TAMPERS.items()))
    ] = None,
) -> None:
    """Simulate a UEFI Secure Boot into a freshly started TPM (PCRs 0-7) and write its log."""
    from agent.sim.boot import simulate_boot
    from agent.tpm.device import Tpm
    from identity.pcr import PcrSelection

    with Tpm(tcti) as tpm:
        bank = tpm.active_banks()[0]
        if any(tpm.pcr_read(PcrSelection.of({bank: [4]}))[bank][4]):
            out.print("[red]error:[/] PCR 4 is already extended; restart the TPM first")
            raise typer.Exit(1)
        simulate_boot(tpm, log, tamper=tamper)
    out.print(f"booted{f' with tamper {tamper!r}' if tamper else ''}; event log at {log}")


if __name__ == "__main__":
    app()
