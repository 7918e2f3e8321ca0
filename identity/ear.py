"""Attestation results as EAR (draft-ietf-rats-ear, claims from RFC 9711 and AR4SI).

Pure: the checks of one attestation in, an AR4SI trustworthiness vector, an
``ear.status`` and the signed token out. The status is never better than the
worst claim of the vector. Tier boundaries follow AR4SI: 0-1 none, 2-31
affirming, 32-95 warning, 96-127 contraindicated.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
SUBMOD = "tpm"
TIERS = ("none", "affirming", "warning", "contraindicated")  # worse to the right
CLAIMS = ("instance-identity", "hardware", "executables", "configuration", "file-system")

# AR4SI values used here
NO_CLAIM = 0
AFFIRMING = 2           # approved / trustworthy / genuine
BOOT_ONLY = 3           # executables: only the boot chain is approved (no runtime list)
WARNING = 32            # unsafe / unrecognised but not known bad
CONTRAINDICATED = 96    # known bad
CONTRAINDICATED_BOOT = 99


def tier(value: int) -> str:
    if 2 <= value <= 31:
        return "affirming"
    if 32 <= value <= 95:
        return "warning"
    if 96 <= value <= 127:
        return "contraindicated"
    return "none"


def worse(a: str, b: str) -> str:
    return a if TIERS.index(a) >= TIERS.index(b) else b


def at_least(actual: str, wanted: str) -> bool:
    """``actual`` meets ``wanted`` (affirming meets warning; none meets nothing)."""
    if actual == "none":
        return False
    order = ("affirming", "warning", "contraindicated")
    return wanted != "none" and order.index(actual) <= order.index(wanted)


@dataclass(frozen=True)
class Appraisal:
    vector: dict[str, int]
    status: str


# The check-name prefixes of each outcome :func:`appraise` reads, in this order:
# instance identity, boot, golden PCRs, IMA, IMA files. A name may be in several.
_GROUPS: tuple[tuple[str, ...], ...] = (
    ("quote.", "csr", "devid."), ("boot.", "eventlog."), ("policy.pcrs",), ("ima.",),
    ("ima.files", "ima.signatures"))
_OUTCOME = ("absent", "pass", "fail")
_MEMBERSHIP: dict[str, tuple[int, ...]] = {}  # check name -> its groups (few distinct names)


def _groups_of(name: str) -> tuple[int, ...]:
    found = _MEMBERSHIP.get(name)
    if found is None:
        found = tuple(i for i, prefixes in enumerate(_GROUPS) if name.startswith(prefixes))
        if len(_MEMBERSHIP) < 4096:
            _MEMBERSHIP[name] = found
    return found


def _outcomes(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per group of :data:`_GROUPS`: 'fail', 'pass' or 'absent' over its checks, skipped
    ones left out; one pass over the checks."""
    worst = [0, 0, 0, 0, 0]  # 0 absent, 1 pass, 2 fail
    for c in checks:
        if c.get("skipped"):
            continue
        groups = _groups_of(str(c.get("name", "")))
        if groups:
            value = 1 if c.get("passed") else 2
            for g in groups:
                if worst[g] < value:
                    worst[g] = value
    return [_OUTCOME[v] for v in worst]


def appraise(checks: Sequence[Mapping[str, Any]], warnings: Sequence[str] = ()) -> Appraisal:
    """The AR4SI vector of one attestation from its recorded checks and warnings."""
    quote, boot, pcrs, ima, ima_files = _outcomes(checks)
    vector = {
        "instance-identity": {"pass": AFFIRMING, "fail": CONTRAINDICATED}.get(quote, NO_CLAIM),
        # the EK chained to a TPM vendor (or was pre-registered) at enrollment
        "hardware": AFFIRMING if quote == "pass" else NO_CLAIM,
        "configuration": _configuration(pcrs, boot),
        "executables": _executables(boot, pcrs, ima_files),
        "file-system": {"pass": AFFIRMING, "fail": CONTRAINDICATED}.get(ima, NO_CLAIM),
    }
    if any(w.startswith("eventlog.") for w in warnings) and vector["configuration"] == AFFIRMING:
        vector["configuration"] = WARNING  # e.g. a firmware quirk handled explicitly
    if any(w.startswith("ima.") for w in warnings) and vector["file-system"] == AFFIRMING:
        vector["file-system"] = WARNING
    status = "none"
    for value in vector.values():
        if value != NO_CLAIM:
            status = worse(tier(value), status) if status != "none" else tier(value)
    return Appraisal(vector, status)


def _configuration(pcrs: str, boot: str) -> int:
    if "fail" in (pcrs, boot):
        return CONTRAINDICATED
    return AFFIRMING if "pass" in (pcrs, boot) else NO_CLAIM


def _executables(boot: str, pcrs: str, ima_files: str) -> int:
    if boot == "fail" or pcrs == "fail":
        return CONTRAINDICATED_BOOT
    if ima_files == "fail":
        return CONTRAINDICATED
    if "pass" not in (boot, pcrs):
        return NO_CLAIM
    return AFFIRMING if ima_files == "pass" else BOOT_ONLY


def thumbprint(certificate_der: bytes) -> str:
    """``x5t#S256`` (RFC 8705): base64url SHA-256 of the DER certificate."""
    digest = hashlib.sha256(certificate_der).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claims(*, issuer: str, device_id: str, now: dt.datetime, ttl: dt.timedelta,
           appraisal: Appraisal, policy_id: str, measurements: Mapping[str, Any],
           certificate_der: bytes, verifier_build: str, nonce: str | None = None,
           audience: str | None = None) -> dict[str, Any]:
    """The EAR claims set for one passing attestation, bound to its certificate."""
    body: dict[str, Any] = {
        "eat_profile": EAR_PROFILE,
        "iss": issuer,
        "sub": device_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "ear.verifier-id": {"developer": "edgeproof", "build": verifier_build},
        "cnf": {"x5t#S256": thumbprint(certificate_der)},
        "submods": {SUBMOD: {
            "ear.status": appraisal.status,
            "ear.trustworthiness-vector": dict(appraisal.vector),
            "ear.appraisal-policy-id": policy_id,
            "edgeproof.measurements": dict(measurements),
        }},
    }
    if nonce is not None:
        body["eat_nonce"] = nonce
    if audience is not None:
        body["aud"] = audience
    return body


def public_jwk(kid: str, public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """An ES256 verification key as a JWK (RFC 7517), as the attestor publishes it."""
    numbers = public.public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": b64(numbers.x), "y": b64(numbers.y)}


def sign(body: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, kid: str) -> str:
    return jwt.encode(dict(body), key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"})
