"""A small OIDC issuer for tests: JWKS, and the authorization-code flow with PKCE.

``/authorize`` signs in ``user`` at once (no login form) and redirects back with a
code bound to the request's PKCE challenge and redirect URI; ``/token`` redeems a code
once, only with the verifier whose S256 hash is that challenge, and answers with an
access token (ES256 JWT) carrying ``roles``. ``redeemed`` and ``refused`` count what
the token endpoint did.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

AUDIENCE = "edgeproof"
CLIENT_ID = "edgeproof-console"


class OidcIssuer:
    def __init__(self, subject: str = "alice@example.test", roles: tuple[str, ...] = ("admin",)
                 ) -> None:
        self.subject, self.roles = subject, roles
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "test-1", "alg": "ES256", "use": "sig"}]}
        self.codes: dict[str, dict[str, str]] = {}
        self.redeemed = 0
        self.refused: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/certs":
                    self._json(200, issuer.jwks)
                elif url.path == "/authorize":
                    self._authorize(dict(urllib.parse.parse_qsl(url.query)))
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, body = issuer.redeem(form)
                self._json(status, body)

            def _authorize(self, query: dict[str, str]) -> None:
                if query.get("response_type") != "code" or query.get("client_id") != CLIENT_ID \
                        or query.get("code_challenge_method") != "S256" \
                        or not query.get("code_challenge"):
                    self._json(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(16)
                issuer.codes[code] = {"challenge": query["code_challenge"],
                                      "redirect_uri": query["redirect_uri"]}
                target = query["redirect_uri"] + "?" + urllib.parse.urlencode(
                    {"code": code, "state": query.get("state", "")})
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.base + "/realms/ops"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def redeem(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        why = ("unknown or used code" if grant is None else
               "wrong client" if form.get("client_id") != CLIENT_ID else
               "redirect_uri differs" if form.get("redirect_uri") != grant["redirect_uri"] else
               "PKCE verifier does not match" if challenge.decode().rstrip("=")
               != grant["challenge"] else None)
        if why is not None:
            self.refused.append(why)
            return 400, {"error": "invalid_grant", "error_description": why}
        self.redeemed += 1
        return 200, {"access_token": self.token(), "token_type": "Bearer", "expires_in": 300}

    def token(self, **claims: Any) -> str:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        body = {"iss": self.issuer, "aud": AUDIENCE, "sub": self.subject,
                "roles": list(self.roles), "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, self.key, algorithm="ES256", headers={"kid": "test-1"})

    def settings(self) -> dict[str, object]:
        """The attestor's ``auth`` and ``console`` overrides that trust this issuer."""
        return {"auth": {"oidc_issuer": self.issuer, "oidc_audience": AUDIENCE,
                         "oidc_jwks_url": self.base + "/certs", "oidc_algorithms": ["ES256"]},
                "console": {"oidc_client_id": CLIENT_ID,
                            "oidc_authorization_url": self.base + "/authorize",
                            "oidc_token_url": self.base + "/token"}}

    def stop(self) -> None:
        self.server.shutdown()
