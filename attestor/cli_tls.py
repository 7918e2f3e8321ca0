"""`attestor tls`: the attestor's own HTTPS certificate, issued by its local CA."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from attestor.cli_options import DEFAULT_DIR, DataDir, Dev

tls_app = typer.Typer(help="The attestor's HTTPS certificate (`serve --tls-cert/--tls-key`).",
                      no_args_is_help=True)
out = Console()

MAX_DAYS = 825  # the longest TLS server lifetime clients still accept (CA/B baseline)


def _addresses(values: list[str]) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    try:
        return tuple(ipaddress.ip_address(v) for v in values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ip") from exc


@tls_app.command("issue")
def tls_issue(
    out_cert: Annotated[Path, typer.Option(help="certificate file to write (PEM: the "
                                           "certificate, then the issuing CA)")],
    out_key: Annotated[Path, typer.Option(help="private key file to write (PEM, mode 0600)")],
    dns: Annotated[list[str] | None, typer.Option(help="a DNS name clients use to reach "
                                                  "the attestor (repeatable)")] = None,
    ip: Annotated[list[str] | None, typer.Option(help="an IP address clients use "
                                                 "(repeatable)")] = None,
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="lifetime in days")] = 90,
    force: Annotated[bool, typer.Option("--force", help="replace existing files (renewal)")
                     ] = False,
    data_dir: DataDir = DEFAULT_DIR,
    dev: Dev = None,
) -> None:
    """Issue a TLS server certificate (P-256, serverAuth, the given names as SANs) from the
    attestor's issuing CA, with a new key. Agents that trust `attestor ca` verify it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestor.backends.files import write_private
    from attestor.backends.issuer.local_ca import LocalCa
    from attestor.cli import fail, settings_for
    from attestor.services.context import utc_now
    from identity.errors import IdentityError

    names, addresses = tuple(dns or ()), _addresses(ip or [])
    if not names and not addresses:
        raise typer.BadParameter("give at least one --dns NAME or --ip ADDRESS")
    if not force:
        for path in (out_cert, out_key):
            if path.exists():
                fail(f"{path} exists; pass --force to replace it")
    settings = settings_for(data_dir, dev)
    try:
        ca = LocalCa.load(settings.ca_dir, settings.ca_passphrase(),
                          trust_domain=settings.trust_domain,
                          device_identity_days=settings.ca.device_identity_days)
    except IdentityError as exc:
        fail(exc.detail)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_tls_server(key.public_key(), dns_names=names, ip_addresses=addresses,
                                 now=utc_now(), days=days)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        write_private(out_key, key_pem, exclusive=False)
        write_private(out_cert, (issued.pem + issued.chain_pem).encode(), mode=0o644,
                      exclusive=False)
    except OSError as exc:
        fail(f"cannot write the certificate or key: {exc}")
    sans = [*names, *(str(a) for a in addresses)]
    out.print(f"[green]issued[/] TLS server certificate {issued.serial} for {', '.join(sans)}, "
              f"valid until {issued.cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    out.print(f"  certificate and chain: {out_cert}; key (0600): {out_key}")
    out.print("  serve it: attestor serve --tls-cert ... --tls-key ...; agents verify it with "
              "`attestor ca` as their ca_bundle")
