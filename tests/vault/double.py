"""VaultHttpDouble: an in-process HTTP double of exactly the Vault endpoints edgeproof uses.

This is a test double, not Vault. The contract suite runs against a real Vault (or
OpenBao) dev server when a ``vault`` or ``bao`` binary is on PATH, and against this
double otherwise; each test run says which. It follows Vault's documented request
and response shapes and status codes (API docs for sys/health, auth/approle,
auth/kubernetes, auth/token lookup-self and renew-self, the PKI engine's sign/:role,
roles/:name and ca_chain, KV v2 data and metadata reads, response wrapping with
X-Vault-Wrap-TTL, sys/wrapping/unwrap and lookup), including the behaviour the
attestor must not rely on being absent: a role with ``use_csr_sans`` copies the
CSR's names, a TTL above the role's ``max_ttl`` is clamped with a warning, a
wrapping token works once, a sealed Vault answers 503 to everything.

Policies are reduced to path globs per token (``fnmatch``); everything else a
token may do is out of scope.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SEALED = "Vault is sealed"
DENIED = "permission denied"
BAD_WRAP = "wrapping token is not valid or does not exist"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Token:
    policies: list[str]  # path globs this token may use
    ttl: int  # seconds; 0 = never expires
    max_ttl: int
    renewable: bool
    created: dt.datetime = field(default_factory=_now)
    expires: dt.datetime | None = None
    accessor: str = field(default_factory=lambda: secrets.token_hex(12))

    def __post_init__(self) -> None:
        if self.ttl:
            self.expires = self.created + dt.timedelta(seconds=self.ttl)

    def alive(self) -> bool:
        return self.expires is None or _now() < self.expires


@dataclass
class Wrapped:
    response: dict[str, Any]
    expires: dt.datetime
    created: dt.datetime
    path: str
    ttl: int


@dataclass
class Role:
    max_ttl: int = 86400
    allowed_uri_sans: list[str] = field(default_factory=list)
    allowed_domains: list[str] = field(default_factory=list)
    allow_subdomains: bool = True
    use_csr_sans: bool = False
    use_csr_common_name: bool = False
    allow_any_name: bool = True


def _ca() -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey]:
    now = _now()
    root_key = ec.generate_private_key(ec.SECP256R1())
    issuing_key = ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey,
             signer: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    signer.public_key()), critical=False)
                .sign(signer, hashes.SHA256()))
    root = cert("double root", "double root", root_key, root_key)
    issuing = cert("double issuing", "double root", issuing_key, root_key)
    return [issuing, root], issuing_key


class VaultHttpDouble:
    """Start with :meth:`start`; ``address`` then serves the Vault HTTP API subset."""

    kind = "in-process HTTP double of the Vault API (tests/vault/double.py)"

    def __init__(self) -> None:
        self.root_token = "hvs." + secrets.token_urlsafe(24)
        self.tokens: dict[str, Token] = {self.root_token: Token(["*"], 0, 0, False)}
        self.wraps: dict[str, Wrapped] = {}
        self.approles: dict[str, tuple[set[str], int, int, list[str]]] = {}
        self.k8s_roles: dict[str, tuple[set[str], int, list[str]]] = {}
        self.roles: dict[str, Role] = {}
        self.kv: dict[str, list[dict[str, Any]]] = {}
        self.chain, self._issuing_key = _ca()
        self.issued: list[x509.Certificate] = []
        self.sealed = False
        self.requests: list[tuple[str, str]] = []  # (method, path) served
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- set-up, as an operator would do it in Vault ---------------------------------
    def start(self) -> VaultHttpDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                double._serve(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                double._serve(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                double._serve(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def token(self, policies: list[str], ttl: int = 0, max_ttl: int = 0,
              renewable: bool = True) -> str:
        value = "hvs." + secrets.token_urlsafe(24)
        self.tokens[value] = Token(policies, ttl, max_ttl or ttl * 4, renewable)
        return value

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def add_approle(self, policies: list[str], ttl: int = 3600,
                    max_ttl: int = 14400) -> tuple[str, str]:
        role_id, secret_id = secrets.token_hex(16), secrets.token_hex(16)
        self.approles[role_id] = ({secret_id}, ttl, max_ttl, policies)
        return role_id, secret_id

    def add_kubernetes_role(self, role: str, jwt: str, policies: list[str],
                            ttl: int = 3600) -> None:
        """Vault would review the JWT with the cluster's TokenReview API; here a JWT is
        valid if registered for the role."""
        self.k8s_roles[role] = ({jwt}, ttl, policies)

    def add_pki_role(self, name: str, role: Role) -> None:
        self.roles[name] = role

    def put_kv(self, path: str, data: dict[str, Any]) -> int:
        versions = self.kv.setdefault(path, [])
        versions.append({"data": data, "created_time": _iso(_now()), "deletion_time": "",
                         "destroyed": False, "version": len(versions) + 1})
        return len(versions)

    def roots_pem(self) -> str:
        return self.chain[-1].public_bytes(serialization.Encoding.PEM).decode()

    # -- the HTTP API ------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path.removeprefix("/v1/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        try:
            body = json.loads(h.rfile.read(length) or b"{}") if length else {}
        except ValueError:
            return _send(h, 400, {"errors": ["failed to parse JSON input"]})
        with self._lock:
            self.requests.append((method, path))
            status, answer = self._route(method, path, query, body, h.headers)
        wrap_ttl = h.headers.get("X-Vault-Wrap-TTL")
        if status == 200 and wrap_ttl and isinstance(answer, dict):
            answer = self._wrap(answer, path, _duration(wrap_ttl))
        _send(h, status, answer)

    def _route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any],
               headers: Any) -> tuple[int, Any]:
        if path == "sys/health":
            if self.sealed:
                return 503, {"initialized": True, "sealed": True, "standby": True}
            return 200, {"initialized": True, "sealed": False, "standby": False,
                         "version": "double"}
        if self.sealed:
            return 503, {"errors": [SEALED]}
        if path == "auth/approle/login" and method == "POST":
            return self._approle(body)
        if path == "auth/kubernetes/login" and method == "POST":
            return self._kubernetes(body)
        presented = headers.get("X-Vault-Token") or ""
        if path == "sys/wrapping/unwrap" and method == "POST":
            if body.get("token"):  # a token in the body: the caller must authenticate
                caller = self.tokens.get(presented)
                if caller is None or not caller.alive():
                    return 403, {"errors": [DENIED]}
            return self._unwrap(str(body.get("token") or presented))
        token = self.tokens.get(presented)
        if token is None or not token.alive():
            return 403, {"errors": [DENIED, "invalid token"]}
        if path == "auth/token/lookup-self":
            return 200, {"data": self._token_data(token)}
        if path == "auth/token/renew-self" and method == "POST":
            return self._renew(presented, token)
        if not any(fnmatch.fnmatch(path, glob) for glob in token.policies):
            return 403, {"errors": [DENIED]}
        if path == "sys/wrapping/lookup" and method == "POST":
            wrapped = self._live_wrap(str(body.get("token", "")))
            if wrapped is None:
                return 400, {"errors": [BAD_WRAP]}
            return 200, {"data": {"creation_path": wrapped.path, "creation_ttl": wrapped.ttl,
                                  "creation_time": _iso(wrapped.created)}}
        mount, _, rest = path.partition("/")
        if mount == "pki":
            return self._pki(method, rest, body)
        if mount == "secret" and method == "GET":
            return self._kv(rest, query)
        return 404, {"errors": [f"no handler for route \"{path}\""]}

    # auth -----------------------------------------------------------------------------
    def _issue(self, policies: list[str], ttl: int, max_ttl: int) -> tuple[int, Any]:
        value = self.token(policies, ttl, max_ttl, renewable=True)
        t = self.tokens[value]
        return 200, {"auth": {"client_token": value, "accessor": t.accessor,
                              "policies": ["edgeproof"], "lease_duration": ttl,
                              "renewable": True}}

    def _approle(self, body: dict[str, Any]) -> tuple[int, Any]:
        role = self.approles.get(str(body.get("role_id", "")))
        if role is None:
            return 400, {"errors": ["invalid role ID"]}
        if body.get("secret_id") not in role[0]:
            return 400, {"errors": ["invalid secret id"]}
        return self._issue(role[3], role[1], role[2])

    def _kubernetes(self, body: dict[str, Any]) -> tuple[int, Any]:
        role = self.k8s_roles.get(str(body.get("role", "")))
        if role is None:
            return 400, {"errors": [f"invalid role name \"{body.get('role')}\""]}
        if body.get("jwt") not in role[0]:
            return 403, {"errors": [DENIED]}
        return self._issue(role[2], role[1], role[1] * 4)

    @staticmethod
    def _token_data(token: Token) -> dict[str, Any]:
        ttl = max(0, int((token.expires - _now()).total_seconds())) if token.expires else 0
        return {"accessor": token.accessor, "ttl": ttl, "renewable": token.renewable,
                "creation_ttl": token.ttl, "policies": ["edgeproof"],
                "expire_time": _iso(token.expires) if token.expires else None}

    def _renew(self, value: str, token: Token) -> tuple[int, Any]:
        if not token.renewable or not token.ttl:
            return 400, {"errors": ["lease is not renewable"]}
        now = _now()
        limit = token.created + dt.timedelta(seconds=token.max_ttl)
        token.expires = min(now + dt.timedelta(seconds=token.ttl), limit)
        ttl = int((token.expires - now).total_seconds())
        return 200, {"auth": {"client_token": value, "accessor": token.accessor,
                              "lease_duration": ttl, "renewable": True},
                     "warnings": [] if ttl == token.ttl else [
                         f"TTL of \"{token.ttl}s\" exceeded the effective max_ttl; TTL value "
                         "is capped"]}

    # response wrapping ---------------------------------------------------------------
    def _wrap(self, answer: dict[str, Any], path: str, ttl: int) -> dict[str, Any]:
        value = "hvs." + secrets.token_urlsafe(24)
        now = _now()
        self.wraps[value] = Wrapped(answer, now + dt.timedelta(seconds=ttl), now, path, ttl)
        return {"request_id": secrets.token_hex(8), "lease_id": "", "renewable": False,
                "lease_duration": 0, "data": None, "wrap_info": {
                    "token": value, "accessor": secrets.token_hex(12), "ttl": ttl,
                    "creation_time": _iso(now), "creation_path": path}}

    def _live_wrap(self, value: str) -> Wrapped | None:
        wrapped = self.wraps.get(value)
        if wrapped is None or _now() >= wrapped.expires:
            return None
        return wrapped

    def _unwrap(self, value: str) -> tuple[int, Any]:
        wrapped = self._live_wrap(value)
        if wrapped is None:
            return 400, {"errors": [BAD_WRAP]}
        del self.wraps[value]  # single use
        return 200, wrapped.response

    # PKI -----------------------------------------------------------------------------
    def _pki(self, method: str, rest: str, body: dict[str, Any]) -> tuple[int, Any]:
        if rest == "ca_chain" and method == "GET":
            return 200, "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                                for c in self.chain)
        kind, _, name = rest.partition("/")
        role = self.roles.get(name)
        if kind == "roles" and method == "GET":
            if role is None:
                return 404, {"errors": []}
            return 200, {"data": {"max_ttl": role.max_ttl, "ttl": 0,
                                  "allowed_uri_sans": role.allowed_uri_sans,
                                  "use_csr_sans": role.use_csr_sans,
                                  "use_csr_common_name": role.use_csr_common_name}}
        if kind == "sign" and method == "POST":
            if role is None:
                return 400, {"errors": [f"unknown role: {name}"]}
            return self._sign(role, body)
        if kind == "sign-verbatim":
            return 403, {"errors": [DENIED]}
        return 404, {"errors": [f"no handler for route \"pki/{rest}\""]}

    def _sign(self, role: Role, body: dict[str, Any]) -> tuple[int, Any]:
        try:
            csr = x509.load_pem_x509_csr(str(body.get("csr", "")).encode())
        except ValueError:
            return 400, {"errors": ["certificate request could not be parsed"]}
        if not csr.is_signature_valid:
            return 400, {"errors": ["request signature invalid"]}
        warnings = []
        ttl = _duration(str(body.get("ttl") or "0")) or role.max_ttl
        if ttl > role.max_ttl:
            warnings.append(f"TTL \"{ttl}s\" is longer than permitted maxTTL "
                            f"\"{role.max_ttl}s\", so maxTTL is being used")
            ttl = role.max_ttl
        uris = [u for u in str(body.get("uri_sans") or "").split(",") if u]
        dns = [d for d in str(body.get("alt_names") or "").split(",") if d]
        if role.use_csr_sans:
            try:
                ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                uris = ext.get_values_for_type(x509.UniformResourceIdentifier)
                dns = ext.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                pass
        for uri in uris:
            if not any(fnmatch.fnmatch(uri, g) for g in role.allowed_uri_sans):
                return 400, {"errors": [f"URI Subject Alternative Name \"{uri}\" not allowed "
                                        "by this role"]}
        if dns and not role.allow_any_name and not all(
                any(d.endswith("." + base) for base in role.allowed_domains) for d in dns):
            return 400, {"errors": [f"subject alternate name {dns[0]} not allowed by this role"]}
        common = str(body.get("common_name") or "")
        if role.use_csr_common_name:
            names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            common = str(names[0].value) if names else common
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        sans += [x509.DNSName(d) for d in dns]
        if common and not body.get("exclude_cn_from_sans") and "." in common:
            sans.append(x509.DNSName(common))
        now = _now()
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
                   .issuer_name(self.chain[0].subject).public_key(csr.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(seconds=30))
                   .not_valid_after(now + dt.timedelta(seconds=ttl))
                   .add_extension(x509.KeyUsage(True, False, True, False, True, False, False,
                                                False, False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self._issuing_key.public_key()), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._issuing_key, hashes.SHA256())
        self.issued.append(cert)
        pem = [c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain]
        serial = f"{cert.serial_number:x}"
        serial = ":".join(serial[i:i + 2] for i in range(0, len(serial), 2))
        return 200, {"data": {
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "issuing_ca": pem[0], "ca_chain": pem, "serial_number": serial,
            "expiration": int(cert.not_valid_after_utc.timestamp())},
            "warnings": warnings or None}

    # KV v2 ---------------------------------------------------------------------------
    def _kv(self, rest: str, query: dict[str, str]) -> tuple[int, Any]:
        kind, _, path = rest.partition("/")
        versions = self.kv.get(path)
        if not versions:
            return 404, {"errors": []}
        if kind == "metadata":
            return 200, {"data": {"current_version": len(versions), "versions": {
                str(v["version"]): {k: v[k] for k in ("created_time", "deletion_time",
                                                      "destroyed")} for v in versions}}}
        if kind != "data":
            return 404, {"errors": []}
        wanted = int(query.get("version") or 0) or len(versions)
        if not 1 <= wanted <= len(versions):
            return 404, {"errors": []}
        v = versions[wanted - 1]
        return 200, {"data": {"data": dict(v["data"]), "metadata": {
            k: v[k] for k in ("created_time", "deletion_time", "destroyed", "version")}}}


def _duration(text: str) -> int:
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text or 0)


def _send(h: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
    if isinstance(answer, str):
        data, kind = answer.encode(), "text/plain"
    else:
        data, kind = json.dumps(answer).encode(), "application/json"
    h.send_response(status)
    h.send_header("Content-Type", kind)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)
