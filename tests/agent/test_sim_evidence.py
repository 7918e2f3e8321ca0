"""A simulated device's evidence passes the identity checks without an attestor: each
cycle a fresh workload key, certified and quoted over that cycle's nonce by the AK,
with a CSR signed by that key (what the cached PCRs and CSR template must not change)."""

from __future__ import annotations

import datetime as dt
import os

from agent.sim.fleet import SimDevice
from identity.checks import CheckRunner
from identity.messages import Challenge
from identity.pcr import PcrSelection, parse_pcr_values
from identity.tpm.ak import check_attestation_key
from identity.tpm.certify import verify_certify
from identity.tpm.quote import verify_quote
from identity.x509.csr import check_csr

EXPIRES = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_every_cycle_has_fresh_key_and_evidence_over_its_nonce() -> None:
    device = SimDevice("SIM-EVIDENCE")
    device.device_id = "0b7c5d36-5e0c-4f39-9d7a-2f6f0f3c1a11"
    ak = check_attestation_key(device.ak.public)
    seen = set()
    for selection in ({"sha256": [0, 1, 2, 3, 4, 5, 6, 7]}, {"sha256": [0, 7]},
                      {"sha256": [0, 1, 2, 3, 4, 5, 6, 7]}):
        nonce = os.urandom(32)
        request = device.evidence(Challenge(nonce=nonce, expires_at=EXPIRES,
                                            pcr_selection=selection))
        runner = CheckRunner()
        quote = verify_quote(runner, ak, request.quote.attest, request.quote.signature,
                             nonce=nonce, pcr_values=parse_pcr_values(request.pcrs),
                             required=PcrSelection.of(selection))
        certified = verify_certify(runner, ak, request.key_certify.attest,
                                   request.key_certify.signature, request.key_public,
                                   qualifying_data=nonce)
        assert quote.passed and certified is not None, runner.reason_codes
        assert sorted(request.pcrs["sha256"], key=int) == [str(i) for i in selection["sha256"]]
        checked = check_csr(request.csr, certified.key)
        assert checked.subject == f"CN={device.device_id}"
        seen.add(request.key_public)
    assert len(seen) == 3  # a fresh workload key each cycle
