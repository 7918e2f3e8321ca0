"""Helpers for the onboarding tests: an OEM with its CA, provisioning a device's swtpm,
and the owner's imports through the real API."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx

from agent.oem.ca import OemAuthority, init_ca
from agent.oem.provision import Provisioned, batch_manifest, provision, record
from agent.sim.swtpm import Manufacturer
from identity.devid.manifest import certificate_sha256
from identity.truststore import TrustStore
from tests.harness import Device, LiveAttestor


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def oem(directory: Path, name: str = "Acme Devices") -> OemAuthority:
    # A CA made "now" must already be valid for the device's certificates made now.
    return init_ca(directory, name, now() - dt.timedelta(minutes=1))


def vendors(maker: Manufacturer) -> TrustStore:
    return TrustStore.from_blobs([("root", maker.root_certificate.read_bytes()),
                                  ("issuer", maker.intermediate_certificate.read_bytes())])


def factory(device: Device, maker: Manufacturer, authority: OemAuthority, batch: Path,
            algorithm: str = "ecc256") -> Provisioned:
    done = provision(device.tpm, authority, vendors(maker), device.serial, now(), algorithm)
    record(batch, done)
    return done


def import_roots(attestor: LiveAttestor, authority: OemAuthority, *,
                 issuing: bool = True) -> None:
    """The OEM's root, and its issuing CA unless ``issuing`` is False (the device then
    presents it from NV)."""
    pem = (authority.directory / "root.pem").read_text()
    if issuing:
        pem += (authority.directory / "issuing.pem").read_text()
    answer = httpx.post(f"{attestor.url}/v1/ownership/roots", json={"certificates": pem},
                        headers=attestor.headers("admin"))
    assert answer.status_code == 201, answer.text


def import_manifest(attestor: LiveAttestor, authority: OemAuthority, batch: Path,
                    device_class: str = "default") -> httpx.Response:
    manifest = batch_manifest(authority, batch, now()).decode()
    return httpx.post(f"{attestor.url}/v1/ownership/manifests",
                      json={"manifest": manifest, "device_class": device_class},
                      headers=attestor.headers("admin"))


def import_serials(attestor: LiveAttestor, authority: OemAuthority,
                   *serials: str) -> httpx.Response:
    """Own ``serials`` by a CSV, bound to ``authority``'s root."""
    return httpx.post(f"{attestor.url}/v1/ownership/serials",
                      json={"csv": "\n".join(serials) + "\n",
                            "root_sha256": certificate_sha256(authority.root)},
                      headers=attestor.headers("admin"))


def post(attestor: LiveAttestor, path: str, message: object) -> httpx.Response:
    from identity.messages import encode

    return httpx.post(f"{attestor.url}{path}", content=encode(message),  # type: ignore[arg-type]
                      headers={"Content-Type": "application/json"})


def codes(answer: httpx.Response) -> list[str]:
    body = answer.json()
    return list(body.get("codes") or [body.get("code")])


def ask_challenge(attestor: LiveAttestor, idevid_cert: bytes,
                  chain: list[bytes]) -> httpx.Response:
    from identity.devid.messages import OnboardingChallengeRequest

    return post(attestor, "/v1/onboarding/challenges",
                OnboardingChallengeRequest(idevid_certificate=idevid_cert, chain=chain))


def evidence(attestor: LiveAttestor, device: Device, *, iak_cert: bytes | None = None,
             idevid_cert: bytes | None = None, challenge_cert: bytes | None = None,
             ) -> tuple[object, object]:
    """A challenge (asked with ``challenge_cert``, by default the IDevID certificate sent)
    and the evidence ``device``'s TPM makes for it with the given certificates (by
    default the ones the OEM left in its NV); the local keys at the agent's handles."""
    import msgspec

    from agent.onboard import build_request, oem_identity
    from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE
    from identity.devid.messages import OnboardingChallenge

    nv_iak, nv_idevid, chain = oem_identity(device.tpm)
    iak_cert, idevid_cert = iak_cert or nv_iak, idevid_cert or nv_idevid
    asked = ask_challenge(attestor, challenge_cert or idevid_cert, chain)
    assert asked.status_code == 201, asked.text
    challenge = msgspec.json.decode(asked.content, type=OnboardingChallenge)
    srk = device.tpm.ensure_srk(SRK_HANDLE)
    if not device.tpm.has(AK_HANDLE):
        device.tpm.create_ak(AK_HANDLE, SRK_HANDLE)
        device.tpm.create_devid(DEVID_HANDLE, SRK_HANDLE)
    request = build_request(device.tpm, challenge, iak_cert, idevid_cert, chain,
                            ek_public=device.tpm.endorsement().public, srk_public=srk,
                            lak_handle=AK_HANDLE, ldevid_handle=DEVID_HANDLE)
    return challenge, request


def refused(attestor: LiveAttestor, request: object) -> list[str]:
    """The codes of an onboarding refused with 403."""
    answer = post(attestor, "/v1/onboarding", request)
    assert answer.status_code == 403, answer.text
    return codes(answer)
