"""`attestor quote verify` and `attestor ekcert check`: the verifier from the shell.

For operators and debugging: the same checks the service runs, on files (such as
`tpm2_quote -m quote.msg -s quote.sig`). Exit 0 when valid, 1 with the reason
codes when not.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rich.console import Console
from rich.markup import escape

from attestor.cli_options import Json
from identity.checks import Check
from identity.errors import IdentityError
from identity.pcr import PcrSelection, parse_pcr_values
from identity.tpm.ak import TpmKey, check_attestation_key
from identity.tpm.keys import signature_scheme
from identity.tpm.structures import parse_attest, parse_signature

quote_app = typer.Typer(help="Verify TPM quotes from files.", no_args_is_help=True)
ekcert_app = typer.Typer(help="Check EK certificates against a trust store.",
                         no_args_is_help=True)
out = Console()



def _report(valid: bool, checks: list[Check], as_json: bool, extra: dict[str, object]) -> NoReturn:
    codes = [c.code for c in checks if not c.passed and not c.skipped and c.code]
    if as_json:
        print(json.dumps({"valid": valid, "codes": codes,
                          "checks": [c.as_dict() for c in checks], **extra}))
    else:
        for check in checks:
            mark = "[green]✓[/]" if check.passed else "[red]✗[/]"
            problem = f"  {check.code}: {escape(str(check.detail))}" if not check.passed else ""
            out.print(f"{mark} {escape(check.name)}{problem}")
        for key, value in extra.items():
            out.print(f"{key}: {escape(str(value))}")
        out.print("[bold green]valid[/]" if valid
                  else f"[bold red]invalid[/]: {escape(', '.join(codes))}")
    raise typer.Exit(0 if valid else 1)


def _refuse(exc: IdentityError, as_json: bool) -> NoReturn:
    _report(False, [Check("input", False, exc.code, exc.detail)], as_json, {})


def _ak_from_file(data: bytes, signature: bytes) -> TpmKey:
    """A TPM2B_PUBLIC (all AK checks apply) or a PEM public key (key only: a PEM says
    nothing of `restricted`, so the scheme is taken from the signature itself)."""
    if not data.lstrip().startswith(b"-----BEGIN"):
        return check_attestation_key(data)
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise typer.BadParameter("the AK must be an RSA or ECC key")
    scheme = signature_scheme(parse_signature(signature))
    return TpmKey(public=b"", name=b"", key=key, scheme=scheme, attributes=0)


@quote_app.command("verify")
def quote_verify(
    ak: Annotated[Path, typer.Option(help="AK public: TPM2B_PUBLIC or PEM")],
    message: Annotated[Path, typer.Option(help="TPMS_ATTEST as the TPM produced it")],
    signature: Annotated[Path, typer.Option(help="TPMT_SIGNATURE")],
    nonce: Annotated[str, typer.Option(help="qualifying data given to TPM2_Quote (hex)")],
    pcrs: Annotated[Path, typer.Option(help='PCR values: {"sha256": {"0": "<hex>", ...}}')],
    require: Annotated[str | None, typer.Option(
        help="PCRs the quote must cover, e.g. sha256:0,1,2,3,4,5,6,7 (default: as quoted)")
    ] = None,
    as_json: Json = False,
) -> None:
    """Verify a quote: signature, magic, type, nonce, PCR selection and digest."""
    from identity.checks import CheckRunner
    from identity.tpm.quote import verify_quote

    try:
        attest_bytes, sig_bytes = message.read_bytes(), signature.read_bytes()
        key = _ak_from_file(ak.read_bytes(), sig_bytes)
        values = parse_pcr_values(json.loads(pcrs.read_text()))
        required = (_parse_selection(require) if require
                    else PcrSelection.of({bank: list(v) for bank, v in values.items()}))
        checks = CheckRunner()
        result = verify_quote(checks, key, attest_bytes, sig_bytes, nonce=bytes.fromhex(nonce),
                              pcr_values=values, required=required)
    except IdentityError as exc:
        _refuse(exc, as_json)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    att = parse_attest(attest_bytes)
    _report(result.passed, checks.checks, as_json, {
        "selection": str(result.selection), "reset_count": att.reset_count,
        "restart_count": att.restart_count, "clock": att.clock, "safe": att.safe,
        "firmware_version": f"0x{att.firmware_version:016x}",
        "warnings": checks.warnings,
    })


def _parse_selection(text: str) -> PcrSelection:
    banks: dict[str, list[int]] = {}
    for part in text.split("+"):
        bank, _, indices = part.partition(":")
        banks[bank.strip()] = [int(i) for i in indices.split(",") if i.strip()]
    return PcrSelection.of(banks)


@ekcert_app.command("check")
def ekcert_check(
    certificate: Annotated[Path, typer.Argument(help="EK certificate (DER or PEM)")],
    trust: Annotated[Path, typer.Option(help="directory of TPM-vendor CA certificates")],
    chain: Annotated[list[Path] | None, typer.Option(help="extra intermediates")] = None,
    require_san: Annotated[bool, typer.Option(help="require the TCG SAN")] = True,
    as_json: Json = False,
) -> None:
    """Validate an EK certificate's chain and TCG EK profile at the current time."""
    from attestor.trust import load_trust_store
    from identity.ekcert import verify_ek_certificate

    store = load_trust_store(trust)
    try:
        info = verify_ek_certificate(
            certificate.read_bytes(), store, dt.datetime.now(dt.UTC),
            [p.read_bytes() for p in chain or []], require_san=require_san)
    except IdentityError as exc:
        _refuse(exc, as_json)
    except OSError as exc:
        raise typer.BadParameter(str(exc)) from exc
    _report(True, [Check("ek.chain", True), Check("ek.profile", True)], as_json, {
        "manufacturer": info.manufacturer, "model": info.model, "version": info.version,
        "chain": [c.subject.rfc4514_string() for c in info.chain],
    })
