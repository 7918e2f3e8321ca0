"""Secrets only the device's TPM can open: delivered wrapped to its EK and AK, opened
by ActivateCredential on that device's swtpm and nowhere else."""

from __future__ import annotations

import base64

import pytest

from agent.attest import attest_once, collect_evidence
from agent.tpm.device import TpmError
from attestor.services.policies import policy_for, set_policy
from identity.messages import encode
from identity.tpmwrap import TpmWrap, TpmWrapInvalid, unwrap
from tests.harness import Device, LiveAttestor, enroll_and_learn, now

pytestmark = [pytest.mark.e2e, pytest.mark.tpm]
VALUE = b"wpa2-psk: correct horse battery staple"


def grant_tpm_bound(attestor: LiveAttestor, name: str) -> None:
    attestor.watch.secret("the TPM-bound secret", VALUE)  # may appear nowhere, ever
    attestor.services.secrets.put(name, VALUE, attestor.clock())  # type: ignore[attr-defined]
    with attestor.services.session() as session, session.begin():
        document, _ = policy_for(session, "default")
        set_policy(session, "default", document.model_copy(update={
            "secrets": (name,), "tpm_bound_secrets": (name,)}), "test", attestor.clock())


def test_tpm_bound_secret_opens_only_on_its_own_tpm(attestor: LiveAttestor, device: Device,
                                                    other_device: Device) -> None:
    config = enroll_and_learn(attestor, device)
    enroll_and_learn(attestor, other_device)
    grant_tpm_bound(attestor, "wifi/psk")

    with attestor.client(config, device.tpm) as client:
        attest_once(config, device.tpm, client, now())
    assert (config.output / "secrets" / "wifi" / "psk").read_bytes() == VALUE

    # what travels: no value, a wrap; the plaintext is nowhere in the answer
    with attestor.client(config, device.tpm) as client:
        challenge = client.challenge(str(config.device_id))
        answer = client.attest(str(config.device_id),
                               collect_evidence(config, device.tpm, str(config.device_id),
                                                challenge).body)
    secret = answer.secrets[0]
    assert secret.value is None and secret.tpm_wrap is not None
    text = encode(answer).decode()
    assert base64.b64encode(VALUE).decode() not in text and VALUE.decode() not in text
    wrapped = secret.tpm_wrap
    sealed = TpmWrap(wrapped.credential_blob, wrapped.encrypted_secret, wrapped.iv,
                     wrapped.ciphertext)

    # another device's TPM cannot activate it (different EK, different AK)
    with pytest.raises(TpmError):
        other_device.tpm.activate_credential(sealed.credential_blob, sealed.encrypted_secret)

    # the right key opens it only for its own name, version and device
    key = device.tpm.activate_credential(sealed.credential_blob, sealed.encrypted_secret)
    assert unwrap(sealed, key, name="wifi/psk", version=secret.version,
                  device_id=str(config.device_id)) == VALUE
    with pytest.raises(TpmWrapInvalid):
        unwrap(sealed, key, name="other/secret", version=secret.version,
               device_id=str(config.device_id))
    with pytest.raises(TpmWrapInvalid):
        unwrap(sealed, bytes(32), name="wifi/psk", version=secret.version,
               device_id=str(config.device_id))


def test_policy_may_bind_only_granted_secrets() -> None:
    from identity.policy import PolicyDocument

    with pytest.raises(ValueError, match="not granted"):
        PolicyDocument(secrets=("a",), tpm_bound_secrets=("b",))
    assert PolicyDocument(secrets=("a",), tpm_bound_secrets=("a",)).tpm_bound_secrets == ("a",)
