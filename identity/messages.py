"""The device protocol: every request and answer between the agent and the attestor.

One definition for both ends: the attestor's device routes decode the raw body into
these structs and encode its answers from them; the agent builds its requests from them
and decodes every answer into them (a wrong shape is a ``msgspec.ValidationError`` there,
never a ``KeyError`` later). Pure: msgspec only, no pydantic, no FastAPI, no database;
so the agent, which imports this, stays without pydantic (docs/benchmarks.md, protocol
models: about 6x faster to decode, and 10 MB less resident agent).

Requests forbid unknown fields and leave their defaults out when encoded (an older
attestor takes what it does not know as absent); answers ignore unknown fields, so an
agent keeps working with a newer attestor that says more. All are frozen, and decoding
is strict: no coercion of ``"1"``, ``true`` or ``1.0`` into an integer, of a number into
a string; JSON's RFC 3339 text is a datetime. Binary values travel as standard base64
(RFC 4648 section 4, padded), which is how msgspec encodes and decodes ``bytes``.
Encode with ``encode``, decode with ``decode``; ``schemas`` gives the JSON Schema of
each struct for the attestor's OpenAPI document.
"""

import datetime as dt
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

MAX_STRUCT_B64 = 8 * 1024
MAX_LOG_B64 = 4 * 1024 * 1024
_BYTE = {"format": "byte"}  # OpenAPI's name for base64 text

B64 = Annotated[bytes, Meta(extra_json_schema=_BYTE)]
StructB64 = Annotated[bytes, Meta(max_length=MAX_STRUCT_B64, extra_json_schema=_BYTE)]
LogB64 = Annotated[bytes, Meta(max_length=MAX_LOG_B64, extra_json_schema=_BYTE)]
LABEL_PATTERN = r"^[\w.:@/+\- ]+$"
Label = Annotated[str, Meta(min_length=1, max_length=128, pattern=LABEL_PATTERN)]
# A device class names policies too, and the database holds 64 characters of it.
DeviceClass = Annotated[str, Meta(min_length=1, max_length=64, pattern=LABEL_PATTERN)]
EarNonce = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_\-]{11,88}$")]
ImaBank = Literal["sha1", "sha256", "sha384", "sha512", "sm3_256"]


def _doc(text: str, **meta: Any) -> Meta:
    return Meta(description=text, **meta)


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
              omit_defaults=True):
    """What a client sends: nothing unknown, nothing coerced."""


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """What the attestor answers: unknown fields ignored (a newer attestor), else strict."""


class SignedAttest(Request, kw_only=True, frozen=True):
    """A TPMS_ATTEST exactly as the TPM produced it, and its TPMT_SIGNATURE."""

    attest: StructB64
    signature: StructB64


# enrollment --------------------------------------------------------------------


class EnrollmentRequest(Request, kw_only=True, frozen=True):
    ek_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the endorsement key")]
    ek_certificate: Annotated[StructB64 | None, _doc("EK certificate (DER)")] = None
    ek_chain: Annotated[list[StructB64], _doc(
        "EK chain certificates (DER) from TPM NV", max_length=8)] = []
    ak_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the attestation key")]
    srk_public: Annotated[StructB64 | None, _doc(
        "TPM2B_PUBLIC of the AK's parent (owner-hierarchy primary)")] = None
    devid_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the DevID signing key")]
    devid_certify: Annotated[SignedAttest, _doc("TPM2_Certify of the DevID by the AK")]
    serial: Label | None = None
    model: Label | None = None
    device_class: DeviceClass = "default"


class EnrollmentChallenge(Answer, kw_only=True, frozen=True):
    enrollment_id: str
    device_id: str
    credential_blob: Annotated[B64, _doc("TPM2B_ID_OBJECT for TPM2_ActivateCredential")]
    encrypted_secret: Annotated[B64, _doc("TPM2B_ENCRYPTED_SECRET")]
    expires_at: dt.datetime


class ActivationRequest(Request, kw_only=True, frozen=True):
    secret: Annotated[bytes, Meta(max_length=64, extra_json_schema=_BYTE)]


class EnrolledDevice(Answer, kw_only=True, frozen=True):
    device_id: str
    certificate: Annotated[str, _doc("device identity certificate (PEM)")]
    chain: Annotated[str, _doc("issuing CA certificates (PEM)")]
    ca: Annotated[str, _doc("trust anchors (PEM)")]


# attestation ---------------------------------------------------------------------


class ImaProgress(Answer, kw_only=True, frozen=True):
    """How much of the device's IMA list the attestor has accepted since the TPM's last
    reset: the agent sends entries from ``accepted_entries`` on while ``reset_count``
    still matches its TPM, else the whole list."""

    accepted_entries: int
    reset_count: int


class Challenge(Answer, kw_only=True, frozen=True):
    nonce: B64
    expires_at: dt.datetime
    pcr_selection: dict[str, list[int]]
    ima: ImaProgress | None = None


class AttestationRequest(Request, kw_only=True, frozen=True):
    nonce: Annotated[bytes, Meta(max_length=64, extra_json_schema=_BYTE)]
    quote: SignedAttest
    pcrs: Annotated[dict[str, dict[str, str]], _doc('{"sha256": {"0": "<hex>", ...}}')]
    event_log: Annotated[LogB64 | None, _doc("binary TCG measured-boot log")] = None
    ima_log: Annotated[LogB64 | None, _doc(
        "IMA binary measurement list, from entry `ima_start` on")] = None
    ima_bank: Annotated[ImaBank, _doc(
        "bank of the IMA list's template hashes: sha1 for binary_runtime_measurements, "
        "the bank for binary_runtime_measurements_<bank>")] = "sha1"
    ima_start: Annotated[int, _doc("index of the first IMA entry sent (0: the whole list "
                                   "since boot)", ge=0)] = 0
    csr: Annotated[StructB64, _doc("PKCS#10 request (DER) signed by the workload key")]
    key_public: Annotated[StructB64, _doc("TPM2B_PUBLIC of the workload key")]
    key_certify: Annotated[SignedAttest, _doc("TPM2_Certify of the workload key by the AK")]
    ear_nonce: Annotated[EarNonce | None, _doc(
        "a relying party's nonce (base64url, 8-64 bytes) to put in the attestation-result "
        "token as eat_nonce")] = None


class TpmWrapped(Answer, kw_only=True, frozen=True):
    """A secret only the device's TPM can open (see identity/tpmwrap.py)."""

    credential_blob: Annotated[B64, _doc("TPM2B_ID_OBJECT for TPM2_ActivateCredential")]
    encrypted_secret: Annotated[B64, _doc("TPM2B_ENCRYPTED_SECRET")]
    iv: B64
    ciphertext: Annotated[B64, _doc("AES-256-GCM under the activated key")]


class VaultWrapped(Answer, kw_only=True, frozen=True):
    """A single-use Vault response-wrapping token: the device unwraps it at ``address``
    (``sys/wrapping/unwrap``) and reads ``field`` of the KV secret. If Vault says the
    token is not valid before ``ttl_seconds`` have passed, someone used it first: report
    it to ``/v1/devices/{id}/secrets/wrap-reuse``."""

    token: str
    wrap_id: Annotated[str, _doc("hash of the token; what the audit log names")]
    ttl_seconds: int
    address: str
    field: str


class GrantedSecret(Answer, kw_only=True, frozen=True):
    name: str
    version: int
    value: Annotated[B64 | None, _doc("the value (absent when wrapped)")] = None
    tpm_wrap: TpmWrapped | None = None
    vault_wrap: VaultWrapped | None = None


class WrapReuseReport(Request, kw_only=True, frozen=True):
    """Vault refused to unwrap a wrapping token this device received and had not used."""

    name: Annotated[str, _doc("the secret's name", max_length=128)]
    token: Annotated[str, _doc("the spent wrapping token (useless now; Vault confirms)",
                               min_length=8, max_length=256)]
    age_seconds: Annotated[int, _doc("seconds since it was received", ge=0, le=86400)]


class WrapReuseAnswer(Answer, kw_only=True, frozen=True):
    status: Annotated[str, _doc("`recorded` (reuse audited and alerted) or `valid` "
                                "(the token still works: unwrap it again)")]


class PolicyRef(Answer, kw_only=True, frozen=True):
    device_class: str
    version: int | None


class AttestationResult(Answer, kw_only=True, frozen=True):
    device_id: str
    verdict: str
    checks: list[dict[str, Any]]
    warnings: list[str]
    policy: PolicyRef
    certificate: str
    chain: str
    ca: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    secrets: list[GrantedSecret]
    ima: ImaProgress | None = None
    ima_pending_entries: Annotated[int, _doc(
        "IMA entries measured after the quote: sent again next time")] = 0
    token: Annotated[str | None, _doc(
        "attestation-result token (EAR as a JWT, ES256), bound to `certificate`; verify "
        "with identity.gate against /.well-known/jwks.json")] = None


# the device's own record (GET /v1/devices/{id}, signed by its DevID key) --------------


class CertificateRef(Answer, kw_only=True, frozen=True):
    serial: str
    kind: str
    not_after: dt.datetime


class DevicePublic(Answer, kw_only=True, frozen=True):
    id: str
    serial: str | None
    model: str | None
    device_class: str
    state: Annotated[str, Meta(examples=["active", "quarantined", "revoked",
                                         "decommissioned"])]
    state_reason: str | None
    enrolled_at: dt.datetime
    last_attested_at: dt.datetime | None
    last_verdict: str | None
    last_reasons: Annotated[list[str], Meta(examples=[["policy.pcr_mismatch"]])] = []
    current_certificate: CertificateRef | None = None
    failed_checks: Annotated[list[dict[str, Any]], _doc(
        "the last attestation's failed checks")] = []
    ak_name: Annotated[str | None, _doc(
        "TPM Name (hex) of the enrolled attestation key; the agent's `doctor` compares it "
        "with the AK in the device's TPM")] = None
    devid_name: Annotated[str | None, _doc(
        "TPM Name (hex) of the enrolled DevID key, which signs the device's requests")] = None


class DevicePage(Answer, kw_only=True, frozen=True):
    """One page of devices; pass ``next_cursor`` back as ``cursor`` for the next (null:
    the end)."""

    items: list[DevicePublic]
    next_cursor: str | None = None


M = TypeVar("M", bound=msgspec.Struct)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_encoder = msgspec.json.Encoder()
STRUCTS: tuple[type[msgspec.Struct], ...] = (
    EnrollmentRequest, EnrollmentChallenge, ActivationRequest, EnrolledDevice, Challenge,
    AttestationRequest, AttestationResult, WrapReuseReport, WrapReuseAnswer, DevicePublic,
    DevicePage,
)


def decode(model: type[M], data: bytes | str) -> M:
    """``data`` (JSON) as ``model``, strictly: ``msgspec.DecodeError`` when it is not JSON,
    ``msgspec.ValidationError`` (a subclass) naming the path when it is not that shape."""
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    result: M = decoder.decode(data)
    return result


def encode(message: msgspec.Struct) -> bytes:
    """The JSON of a request or answer (a request without its defaults)."""
    return _encoder.encode(message)


def to_json(message: msgspec.Struct) -> dict[str, Any]:
    """The message as JSON values, defaults included (what tests and simulators alter)."""
    values: dict[str, Any] = msgspec.to_builtins(msgspec.structs.asdict(message))
    return values


def schemas(ref_template: str = "#/$defs/{name}") -> dict[str, Any]:
    """JSON Schema of every top-level struct and what they contain, by name."""
    _, components = msgspec.json.schema_components(STRUCTS, ref_template=ref_template)
    return components
