"""Bearer JWTs: minted locally (embedded setup) or issued by an OIDC provider.

Algorithms are pinned (ES256 locally; the configured list for OIDC), and
``iss``, ``aud`` and ``exp`` are required. The OIDC provider's JWKS is fetched
and cached; an unknown ``kid`` refreshes it, at most once a minute.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK

from attestor.auth import ROLES, Principal
from attestor.backends.signing import SigningKey
from identity.errors import AuthExpired, AuthInvalid

LOCAL_AUDIENCE = "edgeproof-api"
JWKS_TTL = 600.0
JWKS_MIN_REFRESH = 60.0


def local_issuer(trust_domain: str) -> str:
    return f"edgeproof-attestor:{trust_domain}"


def mint(key: SigningKey, issuer: str, *, role: str, subject: str, ttl: dt.timedelta,
         now: dt.datetime, jti: str | None = None) -> str:
    """A bearer token; ``jti`` (default: a random one) names it in the audit log."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    claims = {"iss": issuer, "aud": LOCAL_AUDIENCE, "sub": subject, "role": role,
              "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp()),
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, key.key, algorithm="ES256", headers={"kid": key.kid})


# Times are checked against the attestor's clock (``now``), not PyJWT's wall clock.
_AT_NOW: Any = {"require": ["iss", "aud", "exp", "sub"], "verify_exp": False,
                "verify_iat": False, "verify_nbf": False}
LEEWAY = 30


def _check_times(claims: dict[str, Any], now: dt.datetime) -> None:
    stamp = now.timestamp()
    try:
        expires = float(claims["exp"])
        issued = float(claims.get("iat", expires - 1))
        not_before = float(claims.get("nbf", issued))
    except (TypeError, ValueError) as exc:
        raise AuthInvalid("the bearer token's times are not numbers") from exc
    if stamp >= expires + LEEWAY:
        raise AuthExpired("the bearer token has expired")
    if issued > stamp + LEEWAY or not_before > stamp + LEEWAY:
        raise AuthInvalid("the bearer token is not valid yet")


def _principal(claims: dict[str, Any], role_claim: str) -> Principal:
    value = claims.get(role_claim)
    roles = value if isinstance(value, list) else [value]
    role = next((r for r in ROLES if r in roles), None)
    if role is None:
        raise AuthInvalid("the token carries no edgeproof role")
    return Principal("token", str(claims.get("sub") or "unknown"), role=role)


class PublicKeys(Protocol):
    def public(self, kid: str) -> ec.EllipticCurvePublicKey | None: ...


class LocalTokens:
    """Tokens this attestor minted, verified with the ring key their ``kid`` names."""

    def __init__(self, keys: PublicKeys, issuer: str) -> None:
        self.keys, self.issuer = keys, issuer

    def verify(self, token: str, now: dt.datetime) -> Principal:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys.public(kid) if isinstance(kid, str) else None
            if key is None:
                raise AuthInvalid("the bearer token names no key of this attestor")
            claims = jwt.decode(token, key, algorithms=["ES256"],
                                audience=LOCAL_AUDIENCE, issuer=self.issuer,
                                options=_AT_NOW)
        except jwt.PyJWTError as exc:
            raise AuthInvalid(f"the bearer token is not valid: {exc}") from exc
        _check_times(claims, now)
        return _principal(claims, "role")


def _signing_keys(jwks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The JWKS's signature keys by kid; malformed keys and encryption keys are skipped."""
    keys: dict[str, dict[str, Any]] = {}
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or "kid" not in entry or entry.get("use", "sig") != "sig":
            continue
        try:
            PyJWK(entry)
        except jwt.PyJWTError:
            continue
        keys[str(entry["kid"])] = entry
    return keys


class OidcTokens:
    """Tokens from an OIDC issuer, checked against its JWKS."""

    def __init__(self, issuer: str, audience: str, jwks_url: str, algorithms: list[str],
                 role_claim: str = "roles",
                 fetch: Callable[[str], dict[str, Any]] | None = None) -> None:
        if not algorithms or any(a.lower() == "none" or a.startswith("HS") for a in algorithms):
            raise ValueError("OIDC algorithms must be asymmetric and explicitly listed")
        self.issuer, self.audience, self.jwks_url = issuer, audience, jwks_url
        self.algorithms, self.role_claim = algorithms, role_claim
        self._fetch = fetch or self._http_fetch
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def _http_fetch(url: str) -> dict[str, Any]:
        response = httpx.get(url, timeout=5.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def _key(self, kid: str, alg: str) -> PyJWK:
        with self._lock:
            stale = time.monotonic() - self._fetched_at
            if kid not in self._keys and (stale > JWKS_MIN_REFRESH or not self._keys) \
                    or stale > JWKS_TTL:
                try:
                    jwks = self._fetch(self.jwks_url)
                except (httpx.HTTPError, ValueError) as exc:
                    if not self._keys:
                        raise AuthInvalid(f"the OIDC JWKS cannot be fetched: {exc}") from exc
                else:
                    self._keys = _signing_keys(jwks)
                    self._fetched_at = time.monotonic()
            entry = self._keys.get(kid)
        if entry is None:
            raise AuthInvalid(f"no key {kid!r} in the OIDC issuer's JWKS")
        if entry.get("alg", alg) != alg:
            raise AuthInvalid(f"key {kid!r} is for {entry['alg']}, not {alg}")
        try:
            return PyJWK(entry, algorithm=alg)  # refuses a key of the wrong type for alg
        except jwt.PyJWTError as exc:
            raise AuthInvalid(f"key {kid!r} cannot verify {alg}: {exc}") from exc

    def verify(self, token: str, now: dt.datetime) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.algorithms:
                raise AuthInvalid(f"token algorithm {header.get('alg')!r} is not accepted")
            key = self._key(str(header.get("kid", "")), str(header["alg"]))
            claims = jwt.decode(token, key.key, algorithms=self.algorithms,
                                audience=self.audience, issuer=self.issuer,
                                options=_AT_NOW)
        except jwt.PyJWTError as exc:
            raise AuthInvalid(f"the bearer token is not valid: {exc}") from exc
        _check_times(claims, now)
        return _principal(claims, self.role_claim)
