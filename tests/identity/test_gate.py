"""EAR tokens and identity.gate: the claim shape, and every refusal triggered by a
realistic forgery (signed by software keys, as an attacker or a buggy issuer would)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity import ear, gate
from identity.gate import GateRefused

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
ISSUER = "edgeproof-attestor:edgeproof.local"
PASSING = [{"name": n, "passed": True} for n in (
    "quote.signature", "quote.nonce", "quote.pcr_digest", "policy.pcrs", "boot.kernel",
    "boot.secure_boot", "eventlog.replay", "ima.replay", "ima.files", "csr")]


def _cert(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(hours=1))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


SIGNER = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())
DEVICE_A = _cert(ec.generate_private_key(ec.SECP256R1()), "device A")
DEVICE_B = _cert(ec.generate_private_key(ec.SECP256R1()), "device B")


def _jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return ear.public_jwk(kid, key.public_key())


JWKS = {"keys": [_jwk(SIGNER, "k1")]}


def body(**changes: Any) -> dict[str, Any]:
    claims = ear.claims(issuer=ISSUER, device_id="d1", now=NOW, ttl=dt.timedelta(minutes=10),
                        appraisal=ear.appraise(PASSING), policy_id="edgeproof:policy/default/v2",
                        measurements={"pcr-digest": "00" * 32}, certificate_der=DEVICE_A,
                        verifier_build="edgeproof test")
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def token(claims: dict[str, Any] | None = None, key: ec.EllipticCurvePrivateKey = SIGNER,
          kid: str = "k1", **headers: Any) -> str:
    return jwt.encode(claims if claims is not None else body(), key, algorithm="ES256",
                      headers={"kid": kid, **headers})


NEED = gate.Requirements(issuer=ISSUER)


def check(tok: str, need: gate.Requirements = NEED, now: dt.datetime = NOW,
          cert: bytes | None = DEVICE_A) -> gate.GateResult:
    return gate.verify(tok, JWKS, need, now, cert)


def test_claims_follow_the_ear_draft() -> None:
    claims = jwt.decode(token(), SIGNER.public_key(), algorithms=["ES256"],
                        options={"verify_exp": False})
    # draft-ietf-rats-ear: required members and their types
    assert claims["eat_profile"] == "tag:github.com,2023:veraison/ear"
    assert isinstance(claims["iat"], int) and claims["exp"] - claims["iat"] == 600
    assert set(claims["ear.verifier-id"]) == {"developer", "build"}
    appraisal = claims["submods"]["tpm"]
    assert appraisal["ear.status"] in ("affirming", "warning", "contraindicated", "none")
    assert set(appraisal["ear.trustworthiness-vector"]) == set(ear.CLAIMS)
    assert all(-128 <= v <= 127 for v in appraisal["ear.trustworthiness-vector"].values())
    assert appraisal["ear.appraisal-policy-id"].endswith("/v2")
    digest = base64.urlsafe_b64encode(hashlib.sha256(DEVICE_A).digest()).rstrip(b"=").decode()
    assert claims["cnf"] == {"x5t#S256": digest}
    assert claims["sub"] == "d1" and claims["iss"] == ISSUER
    result = check(token())
    assert (result.device_id, result.status) == ("d1", "affirming")


@pytest.mark.parametrize(("checks", "warnings", "status", "claim", "value"), [
    (PASSING, [], "affirming", "executables", ear.AFFIRMING),
    ([c for c in PASSING if not c["name"].startswith("ima.")], [], "affirming",
     "executables", ear.BOOT_ONLY),
    (PASSING, ["eventlog.ebs_missing: firmware quirk"], "warning", "configuration", ear.WARNING),
    (PASSING + [{"name": "boot.kernel", "passed": False}], [], "contraindicated",
     "executables", ear.CONTRAINDICATED_BOOT),
    (PASSING + [{"name": "ima.files", "passed": False}], [], "contraindicated",
     "file-system", ear.CONTRAINDICATED),
    ([{"name": "quote.signature", "passed": False}], [], "contraindicated",
     "instance-identity", ear.CONTRAINDICATED),
])
def test_status_is_never_better_than_the_worst_claim(
        checks: list[dict[str, Any]], warnings: list[str], status: str, claim: str,
        value: int) -> None:
    appraisal = ear.appraise(checks, warnings)
    assert appraisal.status == status
    assert appraisal.vector[claim] == value
    worst = max((ear.TIERS.index(ear.tier(v)) for v in appraisal.vector.values() if v),
                default=0)
    assert ear.TIERS.index(appraisal.status) == worst


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    return ".".join([enc(json.dumps(header).encode()), enc(json.dumps(claims).encode()),
                     enc(signature)])


def _hs256_with_public_key() -> str:
    """HMAC keyed with the PEM of the published key (algorithm confusion)."""
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    pem = SIGNER.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = _unsigned(header, body()).rsplit(".", 1)[0]
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    return unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


FORGERIES: dict[str, tuple[Any, str]] = {
    "alg none": (lambda: _unsigned({"alg": "none", "kid": "k1"}, body()),
                 "gate.algorithm_refused"),
    "HS256 with the public key": (_hs256_with_public_key, "gate.algorithm_refused"),
    "unknown kid": (lambda: token(key=OTHER, kid="k9"), "gate.key_unknown"),
    "jku header": (lambda: token(key=OTHER, jku="https://evil.example/jwks.json"),
                   "gate.header_refused"),
    "embedded jwk": (lambda: token(key=OTHER, jwk=_jwk(OTHER, "k1")), "gate.header_refused"),
    "x5c header": (lambda: token(key=OTHER, x5c=["MIIB"]), "gate.header_refused"),
    "no kid": (lambda: jwt.encode(body(), SIGNER, algorithm="ES256"), "gate.header_refused"),
    "signed by another key under our kid": (lambda: token(key=OTHER), "gate.signature_invalid"),
    "missing exp": (lambda: token(body(exp=None)), "gate.claim_missing"),
    "missing cnf": (lambda: token(body(cnf=None)), "gate.claim_missing"),
    "not an EAR": (lambda: token(body(eat_profile="tag:example.com,2020:other")),
                   "gate.claim_missing"),
    "wrong iss": (lambda: token(body(iss="edgeproof-attestor:evil.example")),
                  "gate.issuer_mismatch"),
    "expired": (lambda: token(body(iat=int((NOW - dt.timedelta(hours=1)).timestamp()),
                                   exp=int((NOW - dt.timedelta(minutes=5)).timestamp()))),
                "gate.expired"),
    "issued in the future": (lambda: token(body(iat=int((NOW + dt.timedelta(hours=1))
                                                        .timestamp()))), "gate.too_old"),
    "status better than its claims": (
        lambda: token(body(submods={"tpm": {
            "ear.status": "affirming", "ear.appraisal-policy-id": "p",
            "ear.trustworthiness-vector": {"executables": ear.CONTRAINDICATED_BOOT}}})),
        "gate.token_malformed"),
    "bound to device A, presented by device B": (token, "gate.binding_mismatch"),
    "garbage": (lambda: "not.a.token", "gate.token_malformed"),
}


@pytest.mark.adversarial
@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_forged_tokens_are_refused(forgery: str) -> None:
    make, code = FORGERIES[forgery]
    cert = DEVICE_B if "device B" in forgery else DEVICE_A
    with pytest.raises(GateRefused) as refused:
        check(make(), cert=cert)
    assert refused.value.code == code


def test_relying_party_requirements() -> None:
    warning = token(body(submods={"tpm": {
        "ear.status": "warning", "ear.appraisal-policy-id": "p",
        "ear.trustworthiness-vector": {"configuration": ear.WARNING,
                                       "executables": ear.AFFIRMING}}}))
    with pytest.raises(GateRefused, match="warning"):
        check(warning)
    assert check(warning, gate.Requirements(ISSUER, minimum_status="warning")).status == "warning"
    need = gate.Requirements(ISSUER, minimum_status="warning",
                             minimum_claims={"configuration": "affirming"})
    with pytest.raises(GateRefused) as refused:
        check(warning, need)
    assert refused.value.code == "gate.claim_insufficient"
    with pytest.raises(GateRefused) as refused:
        check(token(), gate.Requirements(ISSUER, audience="update-server"))
    assert refused.value.code == "gate.audience_mismatch"
    assert check(token(body(aud="update-server")),
                 gate.Requirements(ISSUER, audience="update-server")).device_id == "d1"
    with pytest.raises(GateRefused) as refused:
        check(token(), gate.Requirements(ISSUER, max_age=dt.timedelta(minutes=1)),
              now=NOW + dt.timedelta(minutes=5))
    assert refused.value.code == "gate.too_old"
    with pytest.raises(GateRefused) as refused:
        check(token(body(eat_nonce="Zm9vYmFyYmF6cXV4")), gate.Requirements(ISSUER, nonce="other"))
    assert refused.value.code == "gate.nonce_mismatch"
    assert check(token(body(eat_nonce="Zm9vYmFyYmF6cXV4")),
                 gate.Requirements(ISSUER, nonce="Zm9vYmFyYmF6cXV4")).device_id == "d1"
