"""Where a request came from, for its audit entries: the client address (the TCP peer,
or the address a trusted proxy names in its header; nobody else's header counts) and
the user agent; and the principal of a command run on the attestor host
(``cli:<os user>@<host>``). Bound per request by :class:`attestor.observability.RequestContext`,
per process by the CLI, read by :func:`attestor.audit.append`."""

from __future__ import annotations

import getpass
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Origin:
    client_address: str | None = None
    user_agent: str | None = None


_ORIGIN: ContextVar[Origin | None] = ContextVar("edgeproof_origin", default=None)
_NOWHERE = Origin()


def current() -> Origin:
    return _ORIGIN.get() or _NOWHERE


def bind(origin: Origin) -> None:
    _ORIGIN.set(origin)


@contextmanager
def command_line() -> Iterator[None]:
    """A CLI command: no client address (no connection), the CLI's user agent."""
    token = _ORIGIN.set(Origin(None, cli_user_agent()))
    try:
        yield
    finally:
        _ORIGIN.reset(token)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
             proxies: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded: Iterable[str],
                   proxies: Sequence[Network]) -> str | None:
    """The client: ``peer``, unless ``peer`` is a trusted proxy; then the right-most
    address of its ``forwarded`` header values that is not a trusted proxy itself (an
    unreadable hop stops the walk at the last trusted one: never a client's own claim)."""
    if peer is None or not proxies:
        return peer
    address = _address(peer)
    if address is None or not _trusted(address, proxies):
        return peer
    hops = [h for value in forwarded for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return client
        client = str(found)
        if not _trusted(found, proxies):
            return client
    return client


def cli_principal() -> str:
    """``cli:<os user>@<host>``: who ran a command on the attestor host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a bare container)
        user = "uid-unknown"
    return f"cli:{user}@{socket.gethostname()}"


def cli_user_agent() -> str:
    try:
        return f"attestor-cli/{version('edgeproof')}"
    except PackageNotFoundError:
        return "attestor-cli"
