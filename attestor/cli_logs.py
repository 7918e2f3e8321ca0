"""`attestor eventlog show|replay` and `attestor ima replay`: logs from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from attestor.cli_options import Json
from attestor.cli_remote import Format, Output
from identity.errors import IdentityError
from identity.ima.log import ImaEntry

eventlog_app = typer.Typer(help="TCG measured-boot event logs.", no_args_is_help=True)
ima_app = typer.Typer(help="Linux IMA measurement lists.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

LogFile = Annotated[Path, typer.Argument(help="the log file", exists=True, dir_okay=False)]


def _fail(exc: IdentityError) -> NoReturn:
    err.print(f"[bold red]{exc.code}[/]: {escape(exc.detail)}")
    raise typer.Exit(1)


@eventlog_app.command("show")
def eventlog_show(file: LogFile, as_json: Json = False, output: Output = None) -> None:
    """Every event, decoded (like tpm2_eventlog), and what booted (-o json or --json:
    one JSON document; default: text)."""
    from identity.eventlog.describe import describe_event
    from identity.eventlog.summary import summarize
    from identity.eventlog.tcg import parse_event_log

    try:
        log = parse_event_log(file.read_bytes())
    except IdentityError as exc:
        _fail(exc)
    events = [describe_event(e) for e in log.events]
    summary = summarize(log).as_dict()
    if as_json or output == Format.json:
        print(json.dumps({"banks": list(log.banks), "crypto_agile": log.crypto_agile,
                          "events": events, "summary": summary}))
        return
    for event in events:
        out.print(f"[bold]{event['seq']:>4}[/] PCR{event['pcr']:<2} {escape(str(event['type']))}")
        for bank, digest in event["digests"].items():  # type: ignore[attr-defined]
            out.print(f"       {escape(str(bank))}: {escape(str(digest))}", soft_wrap=True)
        if event.get("detail"):
            out.print(f"       {escape(str(event['detail']))}", soft_wrap=True)
    out.print_json(json.dumps(summary))


@eventlog_app.command("replay")
def eventlog_replay(
    file: LogFile,
    as_json: Json = False,
    exit_boot_services_quirk: Annotated[bool, typer.Option(
        help="add the Exit Boot Services events firmware forgot to log")] = False,
) -> None:
    """The PCR values the log replays to, every bank, every PCR it touches."""
    from identity.eventlog.replay import replay
    from identity.eventlog.tcg import parse_event_log

    try:
        result = replay(parse_event_log(file.read_bytes()),
                        add_exit_boot_services=exit_boot_services_quirk)
    except IdentityError as exc:
        _fail(exc)
    values = {bank: {str(i): v.hex() for i, v in sorted(pcrs.items())}
              for bank, pcrs in result.values.items()}
    if as_json:
        print(json.dumps(values))
        return
    for bank, pcrs in values.items():
        for index, value in pcrs.items():
            out.print(f"{bank} PCR{index:<2} {value}")


ImaBank = Annotated[str | None, typer.Option(
    "--list-bank", help="bank of the list's template hashes (sha1, sha256, sha384, sha512, "
    "sm3_256); default: from the file name (binary_runtime_measurements_<bank>), else "
    "from the first entry")]


def read_ima_list(file: Path, ascii_list: bool, list_bank: str | None) -> tuple[
        list[ImaEntry], int, str, str]:
    """Entries, trailing bytes, what they are, and the template-hash bank of a list file."""
    from identity.ima.log import bank_of_file, parse_ascii, parse_binary

    bank = list_bank or bank_of_file(file.name.replace("ascii_", "binary_", 1))
    if ascii_list:
        entries = parse_ascii(file.read_text())
        size = len(entries[0].template_hash) if entries else 20
        return entries, 0, "", bank or {20: "sha1", 48: "sha384", 64: "sha512"}.get(
            size, "sha256")
    listing = parse_binary(file.read_bytes(), bank)
    return list(listing.entries), listing.trailing, listing.cut, listing.bank


@ima_app.command("replay")
def ima_replay(
    file: LogFile,
    ascii_list: Annotated[bool, typer.Option("--ascii", help="an ASCII measurement list")] = False,
    bank: Annotated[list[str] | None, typer.Option(help="PCR bank(s) to replay")] = None,
    list_bank: ImaBank = None,
    as_json: Json = False,
) -> None:
    """Every PCR the list extends (10, or what pcr= rules name) after the list, with its
    entries, violations and template-hash failures."""
    from identity.ima.replay import replay_ima

    banks = bank or ["sha256"]
    try:
        entries, trailing, cut, listed = read_ima_list(file, ascii_list, list_bank)
        result = replay_ima(entries, banks, check_template_hashes=True, list_bank=listed)
    except IdentityError as exc:
        _fail(exc)
    values = {b: {str(i): v.hex() for i, v in sorted(pcrs.items())}
              for b, pcrs in result.state.pcrs.items()}
    report = {
        "pcrs": values[banks[0]] if len(banks) == 1 else values,
        "list_bank": listed, "entries": len(entries), "violations": result.violations,
        "template_hash_failures": len(result.template_hash_failures),
        "trailing_bytes": trailing, **({"cut": cut} if cut else {}),
    }
    if as_json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        out.print(f"{key}: {escape(str(value))}")
