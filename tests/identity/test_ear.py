"""The EAR appraisal decides exactly as before.

``ear.appraise`` reads the checks in one pass (issue 15): these tests keep the former
implementation (five rescans of the check list) as the reference and require the same
vector and status, on the check names the verifiers record and on hypothesis-generated
lists. (Signing stays PyJWT's ``jwt.encode``: writing the JWS by hand saved 8-22 µs a
token, not worth a second implementation of a library's job.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
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
