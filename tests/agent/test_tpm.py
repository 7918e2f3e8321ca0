"""The agent's TPM layer on swtpm: activation with RSA and ECC EKs, persistence."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from tpm2_pytss.internal.templates import template_policy

from agent.enroll import provision
from agent.sim.swtpm import Manufacturer, SwtpmProcess
from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, Tpm
from agent.tpm.ek_policy import POLICY_C, policy_a, policy_or
from identity.tpm.credential import check_ek_public, make_activation
from identity.tpm.structures import object_name, parse_public
from tests.harness import LiveAttestor

pytestmark = pytest.mark.tpm


@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
def test_ek_policy_constants_give_the_tcg_template_policies(hash_name: str) -> None:
    assert policy_a("sha256") == template_policy.low
    assert policy_or(hash_name, [policy_a(hash_name), POLICY_C[hash_name]]) == getattr(
        template_policy, hash_name)


@pytest.fixture(scope="module")
def ecc_tpm(manufacturer: Manufacturer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return manufacturer.manufacture(tmp_path_factory.mktemp("ecc-tpm"), ecc=True)


@pytest.mark.parametrize(("ek_type", "curve_or_bits"), [
    ("EK-RSA2048", 0), ("EK-HIGH-ECC384", 0x0004),
])
def test_credential_activation_with_rsa_and_ecc_eks(ecc_tpm: Path, ek_type: str,
                                                     curve_or_bits: int) -> None:
    with SwtpmProcess(ecc_tpm) as proc, Tpm(proc.tcti, ek_types=(ek_type,)) as tpm:
        endorsement = tpm.endorsement()
        assert endorsement.ek_type == ek_type and endorsement.certificate
        assert check_ek_public(endorsement.public).curve == curve_or_bits
        tpm.ensure_srk()
        ak_name = object_name(parse_public(tpm.create_ak()))
        secret = os.urandom(32)
        challenge = make_activation(endorsement.public, ak_name, secret)
        assert tpm.activate_credential(challenge.credential_blob,
                                       challenge.encrypted_secret) == secret


@pytest.mark.e2e
def test_device_with_an_ecc_p384_ek_enrolls(attestor: LiveAttestor, ecc_tpm: Path,
                                            tmp_path: Path) -> None:
    with SwtpmProcess(ecc_tpm) as proc, Tpm(proc.tcti, ek_types=("EK-HIGH-ECC384",)) as tpm:
        from agent.config import AgentConfig

        config = AgentConfig(state_dir=tmp_path / "state", attestor_url=attestor.url,
                             tcti=proc.tcti, event_log=None)
        with attestor.client() as client:
            enrolled = provision(config, tpm, client, dt.datetime.now(dt.UTC))
    assert enrolled.ek_type == "EK-HIGH-ECC384"


def test_keys_survive_a_tpm_restart(manufacturer: Manufacturer, tmp_path: Path) -> None:
    state = manufacturer.manufacture(tmp_path / "tpm")
    proc = SwtpmProcess(state).start()
    try:
        with Tpm(proc.tcti) as tpm:
            tpm.ensure_srk()
            ak, devid = tpm.create_ak(), tpm.create_devid()
        proc.restart()
        with Tpm(proc.tcti) as tpm:
            assert tpm.read_public(AK_HANDLE) == ak
            assert tpm.read_public(DEVID_HANDLE) == devid
            assert tpm.flush_transients() == 0  # the agent leaves nothing loaded
    finally:
        proc.stop()
