"""What every `attestor` command shares for talking to a server and printing results:
the root options (--server, --token, --profile, --ca-bundle), the client they give, the
-o json|table option, and one-line errors.

A command that works both ways asks :func:`client` first: a server named on the command
line, in the environment or by a config-file profile (attestor/client/config.py says in
which order) means remote; none means local, on the data directory."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, NoReturn

import msgspec
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from attestor.client import OperatorClient
from attestor.client.config import resolve

out = Console()
err = Console(stderr=True)

# Exit codes of every command: 0 done, 1 refused or failed (by the server, or a check
# that failed), 2 bad usage or configuration, 3 the server could not be reached.
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    # One line, even in a log; the message is text (a server's detail may hold brackets).
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


@dataclass(frozen=True)
class RootOptions:
    server: str | None = None
    token: str | None = None
    profile: str | None = None
    ca_bundle: Path | None = None


# Set by the root command's callback on every invocation (typer may vendor its own click,
# so the options are not looked up through click's context).
_root: ContextVar[RootOptions | None] = ContextVar("attestor_root_options", default=None)


def set_root_options(options: RootOptions) -> None:
    _root.set(options)


def root_options() -> RootOptions:
    return _root.get() or RootOptions()


def client() -> OperatorClient | None:
    """The server this command talks to, or None: run locally."""
    opts = root_options()
    connection = resolve(server=opts.server, token=opts.token, ca_bundle=opts.ca_bundle,
                         profile=opts.profile)
    if connection is None:
        return None
    return OperatorClient(connection.server, connection.token,
                          ca_bundle=connection.ca_bundle)


def remote(command: str) -> OperatorClient:
    """The server for a command that only works against one."""
    found = client()
    if found is None:
        fail(f"`attestor {command}` works against a server: give --server URL and a token "
             "(--token, EDGEPROOF_SERVER/EDGEPROOF_TOKEN, or a profile; docs/cli.md)",
             EXIT_USAGE)
    return found


class Format(enum.StrEnum):
    json = "json"
    table = "table"


Output = Annotated[Format | None, typer.Option(
    "--output", "-o", help="json or table (default: table on a terminal, json otherwise)",
    show_default=False)]


def wants_json(fmt: Format | None) -> bool:
    return fmt == Format.json if fmt is not None else not sys.stdout.isatty()


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=False) + "\n")


def emit(fmt: Format | None, value: Any, table: Callable[[], None]) -> None:
    """``value`` as JSON, or ``table()`` for people."""
    if wants_json(fmt):
        print_json(value)
    else:
        table()


def emit_result(fmt: Format | None, value: Any, line: Callable[[], None]) -> None:
    """A command that changes something: one line for people (piped too) unless -o json
    asks for the whole answer."""
    if fmt == Format.json:
        print_json(value)
    else:
        line()


def rows(columns: Iterable[str], data: Iterable[Iterable[object]]) -> None:
    table = Table(*columns)
    for row in data:
        # Text, not markup: a cell holds what the server (or a caller it refused, e.g. a
        # claimed device id in the audit log) sent; "[/]" must not break the table.
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    out.print(table)


def writable(path: Path) -> BinaryIO:
    """``path`` opened for writing, or one line and exit 2 (a directory that does not
    exist, no permission)."""
    try:
        return path.open("wb")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_USAGE)


def when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}Z" if value is not None else ""
