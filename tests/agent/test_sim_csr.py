"""The fleet simulator's template CSRs (agent/sim/csr.py) are byte for byte what
identity.x509.csr builds with asn1crypto, and pass the attestor's CSR check."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sim.csr import ECDSA_SHA256, CsrTemplate, csr_der, der
from identity.x509.csr import assemble_csr, check_csr, csr_info

NAMES = st.one_of(st.uuids().map(str), st.from_regex(r"[ -~]{1,64}", fullmatch=True))


@settings(max_examples=60, deadline=None)
@given(NAMES)
def test_template_csr_is_byte_identical_to_asn1crypto(common_name: str) -> None:
    template = CsrTemplate.of(common_name)
    for _ in range(3):
        private = ec.generate_private_key(ec.SECP256R1())
        info = template.info(private.public_key())
        assert info == csr_info(private.public_key(), common_name)
        signature = private.sign(info, ECDSA_SHA256)
        csr = csr_der(info, signature)
        assert csr == assemble_csr(info, "ecdsa", "sha256", signature)
        checked = check_csr(csr, private.public_key())
        assert checked.subject.startswith("CN=")


def test_long_form_lengths() -> None:
    assert der(0x04, b"x" * 0x7F)[:2] == b"\x04\x7f"
    assert der(0x04, b"x" * 0x80)[:3] == b"\x04\x81\x80"
    assert der(0x04, b"x" * 0x1234)[:4] == b"\x04\x82\x12\x34"


def test_other_curves_are_refused() -> None:
    template = CsrTemplate.of("device")
    with pytest.raises(ValueError, match="P-256"):
        template.info(ec.generate_private_key(ec.SECP384R1()).public_key())
