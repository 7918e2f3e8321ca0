"""`edgeproof-oem`: the factory line's tool (the OEM's CA, provisioning, manifests)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.oem.ca import init_ca, load_ca
from agent.oem.provision import batch_manifest, provision, record
from agent.tpm.device import Tpm, TpmError
from identity.errors import IdentityError
from identity.truststore import TrustStore

app = typer.Typer(help="edgeproof OEM tool: provision TPMs with an IAK and an IDevID (TCG "
                  "DevID spec), issue their certificates, sign batch manifests.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)
CaDir = Annotated[Path, typer.Option("--ca-dir", help="the OEM CA's directory")]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@app.command("init-ca")
def init(ca_dir: CaDir, organization: Annotated[str, typer.Option(
        help="the OEM's name, in every certificate it issues")]) -> None:
    """Create the OEM's root and issuing CA; buyers import root.pem."""
    try:
        authority = init_ca(ca_dir, organization, _now())
    except FileExistsError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    out.print(f"OEM CA created; buyers import {authority.root_pem}")


@app.command("provision")
def provision_cmd(
    ca_dir: CaDir,
    tcti: Annotated[str, typer.Option(help="the device TPM's TCTI")],
    serial: Annotated[str, typer.Option(help="the device's serial number")],
    batch: Annotated[Path, typer.Option(help="batch directory the device is added to")],
    ek_ca: Annotated[list[Path], typer.Option(
        "--ek-ca", help="TPM vendor EK root/intermediate certificate (repeat)")],
    algorithm: Annotated[str, typer.Option(help="ecc256 or rsa2048")] = "ecc256",
) -> None:
    """Provision one device: EK chain, IAK + IDevID, activation, certify, certificates."""
    authority = load_ca(ca_dir)
    vendors = TrustStore.from_blobs((str(p), p.read_bytes()) for p in ek_ca)
    try:
        with Tpm(tcti) as tpm:
            device = provision(tpm, authority, vendors, serial, _now(), algorithm)
    except (IdentityError, TpmError) as exc:
        err.print(f"[bold red]refused:[/] {getattr(exc, 'code', 'tpm')}: {exc}")
        raise typer.Exit(3) from exc
    record(batch, device)
    out.print(f"provisioned {serial}: IDevID certificate sha256 {device.idevid_sha256}")


@app.command("manifest")
def manifest(ca_dir: CaDir,
             batch: Annotated[Path, typer.Option(help="batch directory")],
             output: Annotated[Path, typer.Option("--out", help="manifest file to write")],
             ) -> None:
    """Sign the batch's manifest (serial, IDevID certificate SHA-256) for the buyer."""
    output.write_bytes(batch_manifest(load_ca(ca_dir), batch, _now()))
    out.print(f"signed manifest written to {output}")


def main() -> None:
    app()
