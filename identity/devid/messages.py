"""The onboarding protocol (no station, no API key): the device's two requests and the
attestor's two answers, in the style of :mod:`identity.messages`."""

import datetime as dt
from typing import Annotated

from identity.messages import B64, Answer, DeviceClass, Request, SignedAttest, StructB64, _doc

Chain = Annotated[list[StructB64], _doc("intermediate CA certificates (DER)", max_length=4)]


class OnboardingChallengeRequest(Request, kw_only=True, frozen=True):
    """Step 1: the device names itself by its IDevID certificate."""

    idevid_certificate: Annotated[StructB64, _doc("the OEM's IDevID certificate (DER)")]
    chain: Chain = []


class OnboardingChallenge(Answer, kw_only=True, frozen=True):
    challenge_id: str
    nonce: B64
    expires_at: dt.datetime


class OnboardingRequest(Request, kw_only=True, frozen=True):
    """Step 2: the OEM's certificates, the TPM's keys, and proofs bound to the nonce."""

    challenge_id: Annotated[str, _doc("from step 1", max_length=64)]
    iak_certificate: Annotated[StructB64, _doc("the OEM's IAK certificate (DER)")]
    idevid_certificate: Annotated[StructB64, _doc("the OEM's IDevID certificate (DER)")]
    chain: Chain = []
    ek_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the EK the IAK certificate names")]
    iak_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the IAK")]
    idevid_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the IDevID")]
    idevid_certify: Annotated[SignedAttest, _doc("TPM2_Certify of the IDevID by the IAK")]
    idevid_signature: Annotated[StructB64, _doc(
        "the IDevID's signature (DER ECDSA or PKCS#1 v1.5, SHA-256) over the binding")]
    lak_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the new local attestation key")]
    lak_certify: Annotated[SignedAttest, _doc("TPM2_Certify of the LAK by the IAK")]
    ldevid_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the new local DevID key")]
    ldevid_certify: Annotated[SignedAttest, _doc("TPM2_Certify of the LDevID by the IAK")]
    srk_public: Annotated[StructB64 | None, _doc("TPM2B_PUBLIC of the LAK's parent")] = None


class OnboardedDevice(Answer, kw_only=True, frozen=True):
    device_id: str
    serial: str
    device_class: DeviceClass
    certificate: Annotated[str, _doc("LDevID certificate from the owner's CA (PEM)")]
    chain: str
    ca: str


STRUCTS = (OnboardingChallengeRequest, OnboardingChallenge, OnboardingRequest, OnboardedDevice)
