"""Attestation-result tokens (EAR) for passing attestations, and the published keys."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestor.auth.tokens import local_issuer
from attestor.services.context import Services
from identity import ear
from identity.appraisal import Verdict

JWKS_SKEW = dt.timedelta(seconds=60)


@functools.cache
def verifier_build() -> str:
    """(Cached: reading package metadata costs about a millisecond.)"""
    try:
        return f"edgeproof {version('edgeproof')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "edgeproof (source)"


def issuer(svc: Services) -> str:
    """``iss`` of attestation-result tokens (the same issuer as this attestor's tokens;
    bearer tokens carry ``aud`` edgeproof-api and a role, results an EAR profile)."""
    return local_issuer(svc.settings.trust_domain)


def policy_id(device_class: str, version_: int | None) -> str:
    return f"edgeproof:policy/{device_class}/v{version_ if version_ is not None else 0}"


def measurements(result: Verdict, event_log: bytes | None) -> dict[str, Any]:
    """A summary of what was measured, for relying parties and operators."""
    pcr_digest = hashlib.sha256()
    for bank in sorted(result.pcr_values):
        for index in sorted(result.pcr_values[bank]):
            pcr_digest.update(f"{bank}:{index}:".encode() + result.pcr_values[bank][index])
    out: dict[str, Any] = {"pcrs": {bank: sorted(values) for bank, values
                                    in result.pcr_values.items()},
                           "pcr-digest": pcr_digest.hexdigest()}
    if event_log is not None:
        out["event-log-sha256"] = hashlib.sha256(event_log).hexdigest()
    if result.summary is not None:
        out["secure-boot"] = result.summary.secure_boot
        out["kernel"] = result.summary.kernel
    if result.ima_state is not None:
        out["ima-entries"] = result.ima_state.entries
    return out


def result_token(svc: Services, *, device_id: str, result: Verdict,
                 appraisal: ear.Appraisal, policy: str, certificate: x509.Certificate,
                 event_log: bytes | None, now: dt.datetime, nonce: str | None) -> str:
    """The signed EAR for a pass; it expires with the certificate at the latest."""
    ttl = min(dt.timedelta(seconds=svc.settings.ear.ttl_seconds),
              certificate.not_valid_after_utc - now)
    body = ear.claims(
        issuer=issuer(svc), device_id=device_id, now=now, ttl=ttl, appraisal=appraisal,
        policy_id=policy, measurements=measurements(result, event_log),
        certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        verifier_build=verifier_build(), nonce=nonce, audience=svc.settings.ear.audience)
    key = svc.signer
    return ear.sign(body, key.key, key.kid)


def jwks(svc: Services) -> dict[str, list[dict[str, str]]]:
    """Keys that verify current tokens: the active key and, for the longest token
    lifetime after their retirement, the retired ones."""
    overlap = dt.timedelta(seconds=svc.settings.ear.ttl_seconds) + JWKS_SKEW
    return {"keys": [k.jwk() for k in svc.keys.published(svc.clock(), overlap)]}
