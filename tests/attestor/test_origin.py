"""Where a request came from: the TCP peer, or what a configured trusted proxy says;
a client's own X-Forwarded-For never counts. Recorded in audit entries (and used by the
rate limits)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.sim.swtpm import Manufacturer
from attestor import origin
from attestor.db import queries
from tests.harness import LiveAttestor

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("198.51.100.4", ["203.0.113.9"], "198.51.100.4"),  # not a proxy: its header is ignored
    ("10.0.0.2", [], "10.0.0.2"),  # a proxy that names nobody
    ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
    ("10.0.0.2", ["1.2.3.4, 203.0.113.9"], "203.0.113.9"),  # the client's own claim: no
    ("10.0.0.2", ["1.2.3.4, 203.0.113.9, 10.1.1.1"], "203.0.113.9"),  # through two proxies
    ("10.0.0.2", ["1.2.3.4", "203.0.113.9"], "203.0.113.9"),  # repeated header lines
    ("10.0.0.2", ["10.3.3.3, 10.1.1.1"], "10.3.3.3"),  # only proxies: the farthest
    ("10.0.0.2", ["203.0.113.9, garbage"], "10.0.0.2"),  # unreadable hop: stop there
    ("10.0.0.2", ["[2001:db8::5]:4711"], "2001:db8::5"),
    ("fd00::1", ["203.0.113.9:80"], "203.0.113.9"),
    (None, ["203.0.113.9"], None),
])
def test_client_address(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    assert origin.client_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert origin.client_address("127.0.0.1", ["203.0.113.9"], []) == "127.0.0.1"


def test_the_cli_principal_names_user_and_host() -> None:
    import getpass
    import socket

    assert origin.cli_principal() == f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _refused_entry(live: LiveAttestor, **headers: str) -> dict[str, object]:
    response = httpx.get(f"{live.url}/v1/devices", headers={
        "Authorization": "Bearer nonsense", **headers})
    assert response.status_code == 401
    from attestor import audit

    with live.services.session() as session:
        entry = audit.event_json(queries.audit_events(session)[-1])
    assert entry["request_id"] == response.headers["x-request-id"]
    return entry


@pytest.fixture
def behind_proxy(tmp_path: Path, manufacturer: Manufacturer) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", [manufacturer],
                        trusted_proxies=["127.0.0.1/32"],
                        client_address_header="X-Real-Client").start()
    try:
        yield live
    finally:
        live.stop()


def test_a_clients_forwarded_header_is_not_believed(attestor: LiveAttestor) -> None:
    entry = _refused_entry(attestor, **{"X-Forwarded-For": "203.0.113.9",
                                        "User-Agent": "probe/2"})
    assert (entry["client_address"], entry["user_agent"]) == ("127.0.0.1", "probe/2")
    assert (entry["actor"], entry["outcome"], entry["reasons"]) == (
        "anonymous", "refused", ["auth.invalid"])


def test_a_trusted_proxys_header_names_the_client(behind_proxy: LiveAttestor) -> None:
    entry = _refused_entry(behind_proxy, **{"X-Real-Client": "1.2.3.4, 203.0.113.9",
                                            "X-Forwarded-For": "198.51.100.1"})
    assert entry["client_address"] == "203.0.113.9"
    assert entry["details"]["source"] == "203.0.113.9"  # the refusal counts key it too
