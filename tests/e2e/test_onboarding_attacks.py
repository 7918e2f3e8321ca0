"""The unauthenticated onboarding endpoints attacked as an adversary would, on swtpm:
certificates from the right OEM that say two things, evidence re-used with a fresh
challenge, local keys with the wrong attributes, certifies over the wrong qualifying
data, an owner's revocation undone by a re-import, hostile bodies and request floods.
(tests/e2e/test_onboarding_refusals.py has the refusals issue 17 lists.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families
from tpm2_pytss import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMA_OBJECT

from agent.oem.ca import OemAuthority
from agent.sim.swtpm import Manufacturer
from agent.tpm.device import AK_HANDLE, DEVID_HANDLE, SRK_HANDLE
from identity.devid.keys import IAK_HANDLE
from identity.messages import SignedAttest
from tests.e2e.onboarding import (
    ask_challenge,
    codes,
    evidence,
    factory,
    import_manifest,
    import_roots,
    import_serials,
    now,
    oem,
    post,
    refused,
)
from tests.harness import Device, LiveAttestor

pytestmark = [pytest.mark.e2e, pytest.mark.tpm, pytest.mark.adversarial]
BOTH_DATABASES = True  # runs on SQLite and on PostgreSQL (row locks, concurrent onboarding)
DER = serialization.Encoding.DER




def nv_certs(device: Device) -> tuple[bytes, bytes, list[bytes]]:
    from agent.onboard import oem_identity

    return oem_identity(device.tpm)


def reissued(authority: OemAuthority, der: bytes, subject: x509.Name) -> bytes:
    """``der`` re-signed by the OEM's own issuing CA with another subject: the OEM's
    factory line (or someone holding its key for one product line) says two things."""
    good = x509.load_der_x509_certificate(der)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(good.issuer)
               .public_key(good.public_key())  # type: ignore[arg-type]
               .serial_number(x509.random_serial_number())
               .not_valid_before(good.not_valid_before_utc)
               .not_valid_after(good.not_valid_after_utc))
    for ext in good.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(authority.issuing.key, hashes.SHA256()).public_bytes(DER)


def test_subject_serial_other_than_the_hardware_module_name(
        attestor: LiveAttestor, device: Device, manufacturer: Manufacturer,
        authority: OemAuthority, tmp_path: Path) -> None:
    """An IDevID whose subject serialNumber names another device than its
    HardwareModuleName: whoever reads the subject (a log, SPIRE's selectors, a person)
    and we would disagree on which device this is. The serial is owned by CSV (no
    fingerprint), so only the profile can stop it."""
    factory(device, manufacturer, authority, tmp_path / "batch")
    import_roots(attestor, authority)
    owned = import_serials(attestor, authority, device.serial, "SN-OTHER")
    assert owned.status_code == 201, owned.text
    _, idevid, chain = nv_certs(device)
    good = x509.load_der_x509_certificate(idevid)
    subject = x509.Name([attr if attr.oid != NameOID.SERIAL_NUMBER
                         else x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-OTHER")
                         for attr in good.subject])
    answer = ask_challenge(attestor, reissued(authority, idevid, subject), chain)
    assert answer.status_code == 403 and codes(answer) == ["devid.profile_invalid"], answer.text
    assert "serialNumber" in answer.json()["detail"]


def test_old_evidence_with_a_fresh_challenge(attestor: LiveAttestor, owned: Device) -> None:
    """Evidence recorded for one challenge, sent again under a new challenge's id (the
    old certifies and signature are genuine, only their nonce is stale)."""
    _, old = evidence(attestor, owned)
    _, fresh = evidence(attestor, owned)
    replay = msgspec.structs.replace(old, challenge_id=fresh.challenge_id)  # type: ignore[type-var, attr-defined]
    found = refused(attestor, replay)
    assert {"devid.idevid_certify_invalid", "certify.qualifying_data_mismatch",
            "devid.idevid_signature_invalid"} <= set(found)


def test_certify_over_the_raw_nonce(attestor: LiveAttestor, owned: Device) -> None:
    """The LDevID certified with the nonce itself as qualifying data, not the binding of
    nonce and IAK Name the protocol defines."""
    challenge, request = evidence(attestor, owned)
    done = owned.tpm.certify_persistent(DEVID_HANDLE, challenge.nonce,  # type: ignore[attr-defined]
                                        ak_handle=IAK_HANDLE)
    forged = msgspec.structs.replace(request, ldevid_certify=SignedAttest(  # type: ignore[type-var]
        attest=done.attest, signature=done.signature))
    assert refused(attestor, forged) == ["certify.qualifying_data_mismatch"]


def _swap(device: Device, attributes: TPMA_OBJECT, handle: int) -> None:
    """Replace the key at ``handle`` by a P-256 signing key with ``attributes``."""
    tpm = device.tpm
    if attributes & TPMA_OBJECT.RESTRICTED:  # the agent's own AK template
        tpm.create_ak(handle, SRK_HANDLE)
        return
    srk = tpm.persistent(SRK_HANDLE)
    assert srk is not None
    template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attributes)
    private, public, *_ = tpm.ectx.create(srk, TPM2B_SENSITIVE_CREATE(), template)
    obj = tpm.ectx.load(srk, private, public)
    with obj:
        tpm.persist(obj, handle)


BASE = TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.SIGN_ENCRYPT
FIXED = TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT


@pytest.mark.parametrize(("handle", "attributes", "code"), [
    (AK_HANDLE, BASE | FIXED, "ak.not_restricted"),  # an LAK that signs anything
    (DEVID_HANDLE, BASE | FIXED | TPMA_OBJECT.RESTRICTED, "certify.key_attributes_invalid"),
    (DEVID_HANDLE, BASE, "certify.key_attributes_invalid"),  # an LDevID that can leave
], ids=["lak_unrestricted", "ldevid_restricted", "ldevid_not_fixed_tpm"])
def test_local_keys_with_the_wrong_attributes(attestor: LiveAttestor, owned: Device,
                                              handle: int, attributes: TPMA_OBJECT,
                                              code: str) -> None:
    from agent.onboard import build_request

    challenge, _ = evidence(attestor, owned)
    _swap(owned, attributes, handle)
    iak, idevid, chain = nv_certs(owned)
    request = build_request(owned.tpm, challenge, iak, idevid, chain,  # type: ignore[arg-type]
                            ek_public=owned.tpm.endorsement().public,
                            srk_public=owned.tpm.read_public(SRK_HANDLE),
                            lak_handle=AK_HANDLE, ldevid_handle=DEVID_HANDLE)
    assert code in refused(attestor, request)


def test_a_reimported_manifest_does_not_undo_a_revocation(
        attestor: LiveAttestor, owned: Device, authority: OemAuthority,
        tmp_path: Path) -> None:
    """The owner revoked a stolen device's serial; a later import of its batch (to add
    devices, or to move the batch to another class) must not make it onboardable."""
    revoked = httpx.post(f"{attestor.url}/v1/ownership/{owned.serial}/revoke",
                         headers=attestor.headers("admin"))
    assert revoked.json()["state"] == "revoked"
    again = import_manifest(attestor, authority, tmp_path / "batch", "cameras")
    assert again.status_code == 201, again.text
    assert again.json()["kept_revoked"] == [owned.serial]
    _, _, chain = nv_certs(owned)
    answer = ask_challenge(attestor, nv_certs(owned)[1], chain)
    assert answer.status_code == 403 and codes(answer) == ["onboarding.ownership_revoked"]


def test_another_oems_manifest_cannot_take_over_an_owned_serial(
        attestor: LiveAttestor, owned: Device, other_device: Device,
        manufacturer: Manufacturer, tmp_path: Path) -> None:
    """A second OEM, whose root the owner also trusts (for another product line), makes
    an attacker's TPM into 'SN-1' and slips it into a signed batch manifest of its own.
    Importing that batch must not hand the serial owned with OEM A's IDevID to it."""
    from agent.oem.provision import provision, record
    from tests.e2e.onboarding import vendors

    rival = oem(tmp_path / "rival", "Rival Devices")
    record(tmp_path / "rival-batch", provision(other_device.tpm, rival, vendors(manufacturer),
                                               owned.serial, now()))
    import_roots(attestor, rival)
    imported = import_manifest(attestor, rival, tmp_path / "rival-batch", "gateways")
    assert imported.status_code == 201, imported.text
    assert imported.json()["kept_conflicting"] == [owned.serial]
    _, rival_idevid, chain = nv_certs(other_device)
    answer = ask_challenge(attestor, rival_idevid, chain)
    assert answer.status_code == 403 and codes(answer) == ["onboarding.serial_not_owned"]
    _, request = evidence(attestor, owned)  # the genuine device still onboards
    assert post(attestor, "/v1/onboarding", request).status_code == 201


def test_an_oem_cannot_onboard_onto_an_enrolled_devices_ek(
        attestor: LiveAttestor, device: Device, other_device: Device,
        manufacturer: Manufacturer, tmp_path: Path) -> None:
    """A trusted OEM names a victim's EK (public) in the IAK certificate of a TPM it
    provisioned, for a serial of its own batch. The device id derives from the EK, so the
    onboarding would land on the victim's record and swap its AK and DevID for the
    attacker's: it must be refused, and the victim's record left as it was."""
    from agent.oem.provision import provision, record
    from identity.devid.evidence import spki_sha256
    from identity.devid.profile import issue
    from identity.tpm.keys import public_key
    from identity.tpm.structures import parse_public
    from tests.e2e.onboarding import vendors
    from tests.harness import enroll_and_learn

    victim = enroll_and_learn(attestor, device)
    victim_ek = device.tpm.endorsement().public
    rival = oem(tmp_path / "rival", "Rival Devices")
    record(tmp_path / "rival-batch", provision(other_device.tpm, rival, vendors(manufacturer),
                                               other_device.serial, now()))
    import_roots(attestor, rival)
    assert import_manifest(attestor, rival, tmp_path / "rival-batch").status_code == 201
    iak = x509.load_der_x509_certificate(nv_certs(other_device)[0])
    forged = issue(rival.issuing, iak.public_key(), kind="iak",  # type: ignore[arg-type]
                   serial=other_device.serial, organization="Rival Devices", now=now(),
                   ek_digest=spki_sha256(public_key(parse_public(victim_ek))))
    _, request = evidence(attestor, other_device, iak_cert=forged.public_bytes(DER))
    request = msgspec.structs.replace(request, ek_public=victim_ek)  # type: ignore[type-var]
    answer = post(attestor, "/v1/onboarding", request)
    assert answer.status_code == 403 and codes(answer) == ["onboarding.device_conflict"], \
        answer.text
    with attestor.services.session() as session:
        from attestor.db import queries

        row = queries.find_device(session, victim.device_id)  # type: ignore[arg-type]
        assert row is not None and (row.serial, row.state) == (device.serial, "active")


def test_two_outstanding_challenges_onboard_once(attestor: LiveAttestor,
                                                 owned: Device) -> None:
    """A cloned disk image (or an attacker racing the genuine device) holds two
    challenges and completes both at once: one onboarding, one refusal."""
    from concurrent.futures import ThreadPoolExecutor

    _, first = evidence(attestor, owned)
    _, second = evidence(attestor, owned)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda r: post(attestor, "/v1/onboarding", r),
                                (first, second)))
    assert sorted(a.status_code for a in answers)[0] == 201, [a.text for a in answers]
    loser = max(answers, key=lambda a: a.status_code)
    # PostgreSQL serialises the two on the ownership row's lock: the second is refused.
    # SQLite cannot upgrade the second writer's lock while the first holds it: it fails
    # closed with a retryable 503, and the device's retry asks a new challenge, refused.
    assert (loser.status_code, codes(loser)) in (
        (403, ["onboarding.already_onboarded"]), (503, ["backend.database_unavailable"]))
    again = ask_challenge(attestor, nv_certs(owned)[1], nv_certs(owned)[2])
    assert (again.status_code, codes(again)) == (403, ["onboarding.already_onboarded"])
    with attestor.services.session() as session:
        from attestor.db import queries

        done = [e for e in queries.audit_events(session)
                if (e.action, e.outcome) == ("onboarding.complete", "success")]
    assert len(done) == 1


def test_metrics_count_onboarding_outcomes_and_reasons(attestor: LiveAttestor,
                                                       owned: Device) -> None:
    _, request = evidence(attestor, owned)
    assert post(attestor, "/v1/onboarding", request).status_code == 201
    assert refused(attestor, request) == ["onboarding.challenge_replayed"]
    text = httpx.get(f"{attestor.url}/metrics", headers=attestor.headers("gatekeeper")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def count(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert count("edgeproof_onboardings_total", step="challenge", outcome="success") == 1
    assert count("edgeproof_onboardings_total", step="challenge", outcome="refused") == 0
    assert count("edgeproof_onboardings_total", step="complete", outcome="success") == 1
    assert count("edgeproof_onboardings_total", step="complete", outcome="refused") == 1
    assert count("edgeproof_onboarding_refusals_total", step="complete",
                 reason="onboarding.challenge_replayed") == 1


HOSTILE = [
    (b"{", "request.invalid"),
    (b"[]", "request.invalid"),
    (b'{"idevid_certificate": 7}', "request.invalid"),
    (b'{"idevid_certificate": "not base64!"}', "request.invalid"),
    (b'{"idevid_certificate": "AAAA", "extra": 1}', "request.invalid"),
    (b'{"idevid_certificate": "AAAA", "chain": ["AAAA", "AAAA", "AAAA", "AAAA", "AAAA"]}',
     "request.invalid"),
    (b'{"idevid_certificate": "' + b"A" * 200_000 + b'"}', "request.invalid"),
    (b'{"idevid_certificate": "MAA="}', "devid.profile_invalid"),  # DER of an empty SEQUENCE
    (b'{"idevid_certificate": "AAAA", "chain": ["' + b"[" * 5000 + b'"]}',
     "request.invalid"),
]


@pytest.mark.parametrize(("body", "code"), HOSTILE)
def test_hostile_bodies_are_typed_4xx(attestor: LiveAttestor, body: bytes, code: str) -> None:
    answer = httpx.post(f"{attestor.url}/v1/onboarding/challenges", content=body,
                        headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["code"] == code, answer.text


def test_hostile_onboarding_bodies(attestor: LiveAttestor, owned: Device) -> None:
    """Step 2 with TPM structures that do not parse, and a body over the size limit."""
    _, request = evidence(attestor, owned)
    for field in ("iak_public", "lak_public", "ek_public", "srk_public"):
        broken = msgspec.structs.replace(request, **{field: b"\x00\x05junk"})  # type: ignore[type-var]
        answer = post(attestor, "/v1/onboarding", broken)
        assert 400 <= answer.status_code < 500 and answer.json()["code"], (field, answer.text)
    broken = msgspec.structs.replace(request, idevid_certify=SignedAttest(  # type: ignore[type-var]
        attest=b"\xff" * 64, signature=b"\x00"))
    answer = post(attestor, "/v1/onboarding", broken)
    assert 400 <= answer.status_code < 500, answer.text
    huge = b'{"challenge_id": "' + b"x" * (attestor.settings.max_body_bytes + 10) + b'"}'
    answer = httpx.post(f"{attestor.url}/v1/onboarding", content=huge,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["code"], answer.text


def test_unauthenticated_endpoints_are_rate_limited(tmp_path: Path,
                                                    manufacturer: Manufacturer) -> None:
    live = LiveAttestor(tmp_path / "strict", [manufacturer],
                        rate_limits={"enrollment_per_minute": 3}).start()
    try:
        statuses = [httpx.post(f"{live.url}{path}", content=b"{}",
                               headers={"Content-Type": "application/json"})
                    for path in ("/v1/onboarding/challenges", "/v1/onboarding") * 3]
        assert [a.status_code for a in statuses[:3]] == [422, 422, 422]
        assert {a.status_code for a in statuses[3:]} == {429}
        assert all(int(a.headers["retry-after"]) > 0 for a in statuses[3:])
        assert statuses[3].json()["code"] == "request.rate_limited"
    finally:
        live.stop()

