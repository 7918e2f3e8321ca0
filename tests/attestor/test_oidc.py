"""Bearer tokens from an OIDC issuer: a real JWKS endpoint over HTTP, a live attestor.

Each refusal is a token a real attacker could present: another issuer's or audience's
token, an expired one, `alg: none`, HS256 keyed with the published public key, a key of
the wrong type for the header's algorithm, an unknown kid, a token without a role.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.sim.swtpm import Manufacturer
from attestor.auth import tokens
from tests.harness import LiveAttestor

ISSUER = "https://idp.example.test/realms/ops"
AUDIENCE = "edgeproof"


class Idp:
    """An identity provider: keys, a JWKS served over HTTP, and counted fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.published: list[dict[str, Any]] = []
        self.fetches = 0
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                idp.fetches += 1
                body = json.dumps({"keys": idp.published}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self, kid: str, kind: str = "ec", **jwk_extra: str) -> None:
        if kind == "ec":
            key: Any = ec.generate_private_key(ec.SECP256R1())
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.keys[kid] = key
        self.published.append({**jwk, "kid": kid, **jwk_extra})

    def token(self, kid: str = "k1", alg: str = "ES256", **claims: Any) -> str:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice@example.test",
                "roles": ["auditor"], "iat": now, "exp": now + 300, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def idp() -> Iterator[Idp]:
    provider = Idp()
    provider.add_key("k1")
    provider.add_key("r1", kind="rsa", alg="RS256")
    try:
        yield provider
    finally:
        provider.server.shutdown()


@pytest.fixture
def oidc_attestor(tmp_path: Path, manufacturer: Manufacturer, idp: Idp) -> Iterator[LiveAttestor]:
    live = LiveAttestor(tmp_path / "attestor", [manufacturer],
                        auth={"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE,
                              "oidc_jwks_url": idp.url}).start()
    try:
        yield live
    finally:
        live.stop()


def call(attestor: LiveAttestor, token: str, path: str = "/v1/audit") -> httpx.Response:
    return httpx.get(attestor.url + path, headers={"Authorization": f"Bearer {token}"})


def test_oidc_token_grants_its_role_and_jwks_is_cached(oidc_attestor: LiveAttestor,
                                                       idp: Idp) -> None:
    assert call(oidc_attestor, idp.token()).status_code == 200
    assert call(oidc_attestor, idp.token(kid="r1", alg="RS256")).status_code == 200
    # auditor is read-only: an admin-only endpoint is forbidden, not unauthenticated
    response = httpx.post(f"{oidc_attestor.url}/v1/devices/any/quarantine",
                          json={"reason": "drill"},
                          headers={"Authorization": f"Bearer {idp.token()}"})
    assert response.status_code == 403 and response.json()["code"] == "auth.forbidden"
    assert idp.fetches == 1
    # the local issuer still works alongside
    assert httpx.get(f"{oidc_attestor.url}/v1/audit",
                     headers=oidc_attestor.headers("auditor")).status_code == 200
    entries = httpx.get(f"{oidc_attestor.url}/v1/audit", params={"outcome": "refused"},
                        headers=oidc_attestor.headers("auditor")).json()["items"]
    assert any(e["actor"] == "token:alice@example.test" for e in entries)


def _none_token() -> str:
    header = jwt.utils.base64url_encode(json.dumps({"alg": "none", "kid": "k1"}).encode())
    now = int(dt.datetime.now(dt.UTC).timestamp())
    payload = jwt.utils.base64url_encode(json.dumps(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "roles": ["admin"],
         "exp": now + 300}).encode())
    return f"{header.decode()}.{payload.decode()}."


def _hs256_with_public_key(idp: Idp) -> str:
    """Algorithm confusion: HMAC keyed with the PEM of the issuer's public RSA key."""
    pem = idp.keys["r1"].public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.PKCS1)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    header = {"alg": "HS256", "kid": "r1", "typ": "JWT"}
    segments = [jwt.utils.base64url_encode(json.dumps(header).encode()),
                jwt.utils.base64url_encode(json.dumps(
                    {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "roles": ["admin"],
                     "exp": now + 300}).encode())]
    signing_input = b".".join(segments)
    signature = hmac.new(pem, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


@pytest.mark.adversarial
@pytest.mark.parametrize("forgery, code", [
    ("other issuer", "auth.invalid"),
    ("other audience", "auth.invalid"),
    ("expired", "auth.expired"),
    ("no exp", "auth.invalid"),
    ("no role", "auth.invalid"),
    ("alg none", "auth.invalid"),
    ("hs256 with public key", "auth.invalid"),
    ("wrong key type", "auth.invalid"),
    ("unknown kid", "auth.invalid"),
    ("unlisted algorithm", "auth.invalid"),
    ("signed by another key", "auth.invalid"),
])
def test_forged_oidc_tokens_are_refused(oidc_attestor: LiveAttestor, idp: Idp,
                                        forgery: str, code: str) -> None:
    past = int(dt.datetime.now(dt.UTC).timestamp()) - 3600
    if forgery == "other issuer":
        # a token the attestor treats as local fails the local key's check
        token = idp.token(iss="https://evil.example.test")
    elif forgery == "other audience":
        token = idp.token(aud="some-other-api")
    elif forgery == "expired":
        token = idp.token(iat=past - 300, exp=past)
    elif forgery == "no exp":
        token = idp.token(exp=None)
    elif forgery == "no role":
        token = idp.token(roles=["viewer"])
    elif forgery == "alg none":
        token = _none_token()
    elif forgery == "hs256 with public key":
        token = _hs256_with_public_key(idp)
    elif forgery == "wrong key type":
        # an EC signature presented under the RSA key's kid
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "m", "roles": ["admin"],
                            "exp": past + 7200}, idp.keys["k1"], algorithm="ES256",
                           headers={"kid": "r1"})
    elif forgery == "unknown kid":
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "m", "roles": ["admin"],
                            "exp": past + 7200}, ec.generate_private_key(ec.SECP256R1()),
                           algorithm="ES256", headers={"kid": "stolen"})
    elif forgery == "unlisted algorithm":
        token = idp.token(kid="r1", alg="PS256")
    else:
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "m", "roles": ["admin"],
                            "exp": past + 7200}, ec.generate_private_key(ec.SECP256R1()),
                           algorithm="ES256", headers={"kid": "k1"})
    response = call(oidc_attestor, token)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code


def test_rotated_key_is_fetched_once_and_bad_entries_are_skipped(
        oidc_attestor: LiveAttestor, idp: Idp, monkeypatch: pytest.MonkeyPatch) -> None:
    assert call(oidc_attestor, idp.token()).status_code == 200
    idp.published.append({"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA"})
    idp.add_key("enc", use="enc")
    idp.add_key("k2")
    monkeypatch.setattr(tokens, "JWKS_MIN_REFRESH", 0.0)
    assert call(oidc_attestor, idp.token(kid="k2")).status_code == 200
    assert idp.fetches == 2
    assert call(oidc_attestor, idp.token(kid="enc")).status_code == 401
    assert call(oidc_attestor, idp.token()).status_code == 200  # k1 still valid


def test_half_configured_oidc_refuses_to_start(tmp_path: Path) -> None:
    from attestor.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="oidc_issuer, oidc_audience and oidc_jwks_url"):
        load_settings(tmp_path, dev=True, auth={"oidc_issuer": ISSUER})
    with pytest.raises(ValueError, match="asymmetric"):
        tokens.OidcTokens(ISSUER, AUDIENCE, "http://x", ["HS256"])
