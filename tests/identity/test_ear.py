"""The EAR appraisal and token signing decide and encode exactly as before.

``ear.appraise`` reads the checks in one pass and ``ear.sign`` writes the JWS itself
(issue 15): these tests keep the former implementations (five rescans of the check
list; ``jwt.encode``) as references and require the same vector and status, and the
same header and payload bytes (the ES256 signature is randomized), on the check names
the verifiers record and on hypothesis-generated lists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from identity import ear

# -- the reference: ear.appraise as it was before issue 15 --------------------------------


def _old_outcomes(checks: Sequence[Mapping[str, Any]], prefixes: tuple[str, ...]) -> str:
    relevant = [c for c in checks if str(c.get("name", "")).startswith(prefixes)
                and not c.get("skipped")]
    if not relevant:
        return "absent"
    return "pass" if all(c.get("passed") for c in relevant) else "fail"


def old_appraise(checks: Sequence[Mapping[str, Any]],
                 warnings: Sequence[str] = ()) -> ear.Appraisal:
    quote = _old_outcomes(checks, ("quote.", "csr", "devid."))
    boot = _old_outcomes(checks, ("boot.", "eventlog."))
    pcrs = _old_outcomes(checks, ("policy.pcrs",))
    ima = _old_outcomes(checks, ("ima.",))
    ima_files = _old_outcomes(checks, ("ima.files", "ima.signatures"))
    vector = {
        "instance-identity": {"pass": ear.AFFIRMING,
                              "fail": ear.CONTRAINDICATED}.get(quote, ear.NO_CLAIM),
        "hardware": ear.AFFIRMING if quote == "pass" else ear.NO_CLAIM,
        "configuration": ear._configuration(pcrs, boot),
        "executables": ear._executables(boot, pcrs, ima_files),
        "file-system": {"pass": ear.AFFIRMING,
                        "fail": ear.CONTRAINDICATED}.get(ima, ear.NO_CLAIM),
    }
    if (any(w.startswith("eventlog.") for w in warnings)
            and vector["configuration"] == ear.AFFIRMING):
        vector["configuration"] = ear.WARNING
    if any(w.startswith("ima.") for w in warnings) and vector["file-system"] == ear.AFFIRMING:
        vector["file-system"] = ear.WARNING
    status = "none"
    for value in vector.values():
        if value != ear.NO_CLAIM:
            status = ear.worse(ear.tier(value), status) if status != "none" else ear.tier(value)
    return ear.Appraisal(vector, status)


# -- check lists ----------------------------------------------------------------------------

NAMES = [
    "quote.scheme", "quote.signature", "quote.magic", "quote.type", "quote.nonce",
    "quote.qualified_signer", "quote.pcr_selection", "quote.pcr_values", "quote.pcr_digest",
    "quote.reset_count", "quote.clock", "eventlog.present", "eventlog.replay",
    "eventlog.integrity", "boot.appraisal", "boot.secure_boot", "boot.kernel", "boot.dbx",
    "ima.present", "ima.appraisal", "ima.replay", "ima.boot_aggregate", "ima.files",
    "ima.signatures", "ima.template_hashes", "policy.pcrs", "policy.pcrs.extra",
    "key.certify.scheme", "key.certify.signature", "key.certify.type", "csr", "csr.extra",
    "devid.chain", "devid", "ak.attributes", "quotes", "imaging", "", "policy.pcr",
    "boot", "eventlog",
]
PASSING = [{"name": n, "passed": True} for n in NAMES if n]

check = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(NAMES), st.text(max_size=12))},
    optional={"passed": st.one_of(st.booleans(), st.none(), st.integers(0, 2)),
              "skipped": st.one_of(st.booleans(), st.none()),
              "code": st.sampled_from(["check.skipped", "quote.nonce_mismatch"])})
warning = st.one_of(st.sampled_from(["eventlog.undecodable: x", "ima.partial_tail: 3",
                                     "clock.unsafe: power loss", "eventlog.", "ima."]),
                    st.text(max_size=10))


@settings(max_examples=600)
@given(st.lists(check, max_size=40), st.lists(warning, max_size=3))
def test_appraise_matches_the_rescanning_reference(checks: list[dict[str, Any]],
                                                   warnings: list[str]) -> None:
    assert ear.appraise(checks, warnings) == old_appraise(checks, warnings)


@pytest.mark.parametrize("failing", [None, *NAMES])
@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("warnings", [(), ("eventlog.undecodable: x",), ("ima.partial: 1",)])
def test_appraise_each_single_failure(failing: str | None, skip: bool,
                                      warnings: tuple[str, ...]) -> None:
    checks: list[dict[str, Any]] = [dict(c) for c in PASSING]
    if failing is not None:
        checks.append({"name": failing, "passed": False, "code": "x", **(
            {"skipped": True} if skip else {})})
    assert ear.appraise(checks, warnings) == old_appraise(checks, warnings)
    assert ear.appraise(checks[:5], warnings) == old_appraise(checks[:5], warnings)
    assert ear.appraise([], warnings) == old_appraise([], warnings)


# -- token signing -------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
NOW = dt.datetime(2026, 12, 2, 7, 0, tzinfo=dt.UTC)


def _body(**extra: Any) -> dict[str, Any]:
    appraisal = ear.appraise(PASSING)
    body = ear.claims(issuer="spiffe://edge.example/attestor", device_id="dev-1", now=NOW,
                      ttl=dt.timedelta(minutes=30), appraisal=appraisal,
                      policy_id="edgeproof:policy/gateway/v3",
                      measurements={"pcrs": {"sha256": [0, 1, 7]}, "pcr-digest": "ab" * 32,
                                    "kernel": "vmlinuz-6.1 ünïcode", "secure-boot": True},
                      certificate_der=b"\x30\x03\x02\x01\x01", verifier_build="edgeproof 1.0",
                      nonce="n-1", audience="updates")
    body.update(extra)
    return body


def _same_token(ours: str, theirs: str) -> None:
    assert ours.rsplit(".", 1)[0] == theirs.rsplit(".", 1)[0]  # header and payload bytes
    assert len(ours.rsplit(".", 1)[1]) == len(theirs.rsplit(".", 1)[1]) == 86  # r || s


@pytest.mark.parametrize("kid", ["k1", "2026-12-02T07:00:00Z/ab12", "kïd\u2603", ""])
@pytest.mark.parametrize("extra", [{}, {"iat": NOW, "exp": NOW + dt.timedelta(hours=1)},
                                   {"nbf": NOW, "x": [1, 2.5, None, "\u00e9"]}])
def test_sign_writes_what_pyjwt_writes(kid: str, extra: dict[str, Any]) -> None:
    body = _body(**extra)
    ours = ear.sign(body, KEY, kid)
    _same_token(ours, jwt.encode(dict(body), KEY, algorithm="ES256",
                                 headers={"kid": kid, "typ": "JWT"}))
    decoded = jwt.api_jwt.decode_complete(ours, KEY.public_key(), algorithms=["ES256"],
                                          options={"verify_aud": False, "verify_exp": False,
                                                   "verify_iat": False, "verify_nbf": False})
    assert decoded["header"] == {"alg": "ES256", "kid": kid, "typ": "JWT"}
    assert decoded["payload"]["submods"] == body["submods"]


@settings(max_examples=100)
@given(st.dictionaries(st.text(max_size=8), st.one_of(
    st.integers(-2**40, 2**40), st.text(max_size=20), st.booleans(), st.none(),
    st.lists(st.integers(0, 9), max_size=3)), max_size=6))
def test_sign_any_claims(extra: dict[str, Any]) -> None:
    extra.pop("iss", None)
    body = _body(**extra)
    _same_token(ear.sign(body, KEY, "k"), jwt.encode(dict(body), KEY, algorithm="ES256",
                                                     headers={"kid": "k", "typ": "JWT"}))


def test_sign_refuses_what_pyjwt_refuses() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode(_body(), p384, algorithm="ES256")
    with pytest.raises(jwt.InvalidKeyError):
        ear.sign(_body(), p384, "k")
    for bad in (_body(iss=3),):
        with pytest.raises(TypeError):
            jwt.encode(bad, KEY, algorithm="ES256")
        with pytest.raises(TypeError):
            ear.sign(bad, KEY, "k")
    with pytest.raises(jwt.InvalidTokenError):
        ear.sign(_body(), KEY, 7)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ear.sign(_body(x=object()), KEY, "k")
