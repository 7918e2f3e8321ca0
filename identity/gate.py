"""Checking an attestation-result token, for any relying party (offline).

Pure: the token, the attestor's JWKS (as published at ``/.well-known/jwks.json``)
and the time come in; a :class:`GateResult` or a typed :class:`GateRefused` with
a stable reason code goes out. Checked, in order: the header (``kid`` required;
``jku``, ``x5u``, ``jwk``, ``x5c`` and ``crit`` refused, so the token cannot name
its own key), the algorithm (pinned, ES256 by default; never ``none`` or HMAC),
the signature with the JWKS key of that ``kid``, the required claims, ``iss``,
``aud`` when the relying party uses one, ``exp`` and ``iat`` against ``now``, the
nonce when the relying party sent one, the EAR status and per-claim tiers, and
the binding to the presented certificate (``cnf`` / ``x5t#S256``).
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt import PyJWK

from identity import ear
from identity.errors import EvidenceError


class GateRefused(EvidenceError):
    """A relying party's check of an attestation-result token (identity.gate) failed."""

    code = "gate.refused"


class GateTokenMalformed(GateRefused):
    code = "gate.token_malformed"


class GateHeaderRefused(GateRefused):
    code = "gate.header_refused"


class GateAlgorithmRefused(GateRefused):
    code = "gate.algorithm_refused"


class GateKeyUnknown(GateRefused):
    code = "gate.key_unknown"


class GateSignatureInvalid(GateRefused):
    code = "gate.signature_invalid"


class GateClaimMissing(GateRefused):
    code = "gate.claim_missing"


class GateIssuerMismatch(GateRefused):
    code = "gate.issuer_mismatch"


class GateAudienceMismatch(GateRefused):
    code = "gate.audience_mismatch"


class GateExpired(GateRefused):
    code = "gate.expired"


class GateTooOld(GateRefused):
    code = "gate.too_old"


class GateNonceMismatch(GateRefused):
    code = "gate.nonce_mismatch"


class GateStatusInsufficient(GateRefused):
    code = "gate.status_insufficient"


class GateClaimInsufficient(GateRefused):
    code = "gate.claim_insufficient"


class GateBindingMismatch(GateRefused):
    code = "gate.binding_mismatch"


FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")
REQUIRED = ("iss", "sub", "iat", "exp", "eat_profile", "submods", "cnf")


@dataclass(frozen=True)
class GateResult:
    device_id: str
    status: str
    vector: dict[str, int]
    policy_id: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    measurements: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Requirements:
    """What a relying party demands of a token."""

    issuer: str
    audience: str | None = None
    max_age: dt.timedelta | None = None
    minimum_status: str = "affirming"
    minimum_claims: Mapping[str, str] = field(default_factory=dict)
    nonce: str | None = None
    algorithms: tuple[str, ...] = ("ES256",)
    leeway: dt.timedelta = dt.timedelta(seconds=30)


def _key(jwks: Mapping[str, Any], kid: str, alg: str) -> Any:
    for entry in jwks.get("keys", []) if isinstance(jwks, Mapping) else []:
        if isinstance(entry, Mapping) and entry.get("kid") == kid:
            if entry.get("alg", alg) != alg or entry.get("use", "sig") != "sig":
                raise GateKeyUnknown(f"key {kid!r} is not a {alg} signing key")
            try:
                return PyJWK(dict(entry), algorithm=alg).key
            except jwt.PyJWTError as exc:
                raise GateKeyUnknown(f"key {kid!r} is unusable: {exc}") from exc
    raise GateKeyUnknown(f"no key {kid!r} in the attestor's JWKS")


def _header(token: str, algorithms: tuple[str, ...]) -> tuple[str, str]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise GateTokenMalformed(f"not a JWS: {exc}") from exc
    named = [h for h in FORBIDDEN_HEADERS if h in header]
    if named:
        raise GateHeaderRefused(f"the token header carries {', '.join(named)}")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in algorithms or alg.startswith("HS") or \
            alg.lower() == "none":
        raise GateAlgorithmRefused(f"algorithm {alg!r} is not accepted")
    if not isinstance(kid, str) or not kid:
        raise GateHeaderRefused("the token header names no kid")
    return alg, kid


def _time(claims: Mapping[str, Any], name: str) -> dt.datetime:
    value = claims.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise GateClaimMissing(f"{name} is missing or not a number")
    return dt.datetime.fromtimestamp(value, dt.UTC)


def verify(token: str, jwks: Mapping[str, Any], need: Requirements, now: dt.datetime,
           certificate_der: bytes | None) -> GateResult:
    """The token's appraisal if it satisfies ``need`` at ``now`` for the holder of
    ``certificate_der`` (None: the caller checks no binding, and says why)."""
    alg, kid = _header(token, need.algorithms)
    key = _key(jwks, kid, alg)
    try:
        claims = jwt.decode(token, key, algorithms=[alg],
                            options={"verify_exp": False, "verify_iat": False,
                                     "verify_nbf": False, "verify_aud": False,
                                     "verify_iss": False})
    except jwt.InvalidSignatureError as exc:
        raise GateSignatureInvalid("the token's signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise GateTokenMalformed(f"the token does not decode: {exc}") from exc
    missing = [c for c in REQUIRED if c not in claims]
    if missing:
        raise GateClaimMissing(f"missing claims: {', '.join(missing)}")
    if claims.get("eat_profile") != ear.EAR_PROFILE:
        raise GateClaimMissing(f"eat_profile is not {ear.EAR_PROFILE}")
    if claims["iss"] != need.issuer:
        raise GateIssuerMismatch(f"issued by {claims['iss']!r}, not {need.issuer!r}")
    if need.audience is not None:
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if need.audience not in audiences:
            raise GateAudienceMismatch(f"the token is not for {need.audience!r}")
    issued, expires = _time(claims, "iat"), _time(claims, "exp")
    if now >= expires + need.leeway:
        raise GateExpired(f"the token expired at {expires:%Y-%m-%dT%H:%M:%SZ}")
    if issued > now + need.leeway:
        raise GateTooOld("the token is issued in the future")
    if need.max_age is not None and now - issued > need.max_age:
        raise GateTooOld(f"the attestation is {int((now - issued).total_seconds())} s old; "
                         f"at most {int(need.max_age.total_seconds())} s accepted")
    if need.nonce is not None and not hmac.compare_digest(
            str(claims.get("eat_nonce", "")).encode(), need.nonce.encode()):
        raise GateNonceMismatch("the token does not carry the nonce this relying party sent")
    result = _appraisal(claims, issued, expires)
    _tiers(result, need)
    if certificate_der is not None:
        cnf = claims.get("cnf")
        bound = cnf.get("x5t#S256") if isinstance(cnf, Mapping) else None
        if not isinstance(bound, str) or not hmac.compare_digest(
                bound.encode(), ear.thumbprint(certificate_der).encode()):
            raise GateBindingMismatch("the token is bound to another certificate")
    return result


def _appraisal(claims: Mapping[str, Any], issued: dt.datetime,
               expires: dt.datetime) -> GateResult:
    submods = claims.get("submods")
    appraisal = submods.get(ear.SUBMOD) if isinstance(submods, Mapping) else None
    if not isinstance(appraisal, Mapping) or "ear.status" not in appraisal:
        raise GateClaimMissing(f"submods.{ear.SUBMOD} with ear.status is missing")
    vector = appraisal.get("ear.trustworthiness-vector", {})
    if not isinstance(vector, Mapping) or not all(isinstance(v, int) for v in vector.values()):
        raise GateTokenMalformed("ear.trustworthiness-vector is not a map of integers")
    status = str(appraisal["ear.status"])
    worst = "none"
    for value in vector.values():
        if value:
            worst = ear.worse(ear.tier(value), worst) if worst != "none" else ear.tier(value)
    if vector and ear.worse(worst, status) != status:
        raise GateTokenMalformed(f"ear.status {status!r} is better than its worst claim")
    return GateResult(str(claims["sub"]), status, dict(vector),
                      str(appraisal.get("ear.appraisal-policy-id", "")), issued, expires,
                      dict(appraisal.get("edgeproof.measurements", {})))


def _tiers(result: GateResult, need: Requirements) -> None:
    if not ear.at_least(result.status, need.minimum_status):
        raise GateStatusInsufficient(f"status {result.status}, {need.minimum_status} needed")
    for claim, wanted in need.minimum_claims.items():
        value = result.vector.get(claim, ear.NO_CLAIM)
        if not ear.at_least(ear.tier(value), wanted):
            raise GateClaimInsufficient(f"{claim} is {ear.tier(value)} ({value}), "
                                        f"{wanted} needed")
