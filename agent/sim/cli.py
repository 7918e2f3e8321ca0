"""`edgeproof-sim`: emulated hardware for development, demos and tests."""

from __future__ import annotations

import shlex
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from agent.sim.boot import TAMPERS

if TYPE_CHECKING:
    from agent.sim.swtpm import Manufacturer

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
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", "-d", envvar="EDGEPROOF_DATA_DIR",
        help="the attestor's data directory, for the printed `attestor trust add` "
             "(the attestor's own default)")] = Path("attestor-data"),
) -> None:
    """Manufacture a TPM with EK certificates signed by the test manufacturer's CA."""
    from agent.sim.swtpm import Manufacturer

    maker = Manufacturer(manufacturer.resolve())
    maker.ensure_config()
    maker.manufacture(state_dir.resolve(), ecc=ecc)
    print(f"manufactured {state_dir}; trust the manufacturer with:")
    print(f"  {trust_add_command(maker, data_dir)}", flush=True)


def trust_add_command(maker: Manufacturer, data_dir: Path) -> str:
    """The `attestor trust add` line for ``maker``'s CA, to paste as it is: absolute
    paths, shell-quoted, printed without wrapping or markup."""
    return shlex.join(["attestor", "trust", "add", "-d", str(data_dir.resolve()),
                       str(maker.root_certificate), str(maker.intermediate_certificate)])


@app.command()
def run(
    state_dir: Annotated[Path, typer.Argument(help="a manufactured TPM's state")],
    port: Annotated[int | None, typer.Option(
        min=1, max=65534, help="listen on PORT and PORT+1 from now on (default: the port "
        "this TPM used before, recorded in its state directory; a free one the first "
        "time)")] = None,
) -> None:
    """Run the TPM until interrupted; prints its TCTI, the same after every restart."""
    from agent.sim.swtpm import SwtpmError, SwtpmProcess

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        proc = SwtpmProcess(state_dir.resolve(), port=port or 0).start()
    except SwtpmError as exc:
        typer.echo(f"error: {exc}", err=True)  # one line, paths as they are
        raise typer.Exit(1) from exc
    with proc:
        print(proc.tcti, flush=True)
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
