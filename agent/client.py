"""HTTP client for the attestor's API v1: requests and answers are the protocol's models
(identity.messages); problem responses become AttestorError, a wrong shape MalformedAnswer."""

from __future__ import annotations

import datetime as dt
import email.utils
import http.client
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from identity.devid.messages import (
    OnboardedDevice,
    OnboardingChallenge,
    OnboardingChallengeRequest,
    OnboardingRequest,
)
from identity.messages import (
    ActivationRequest,
    AttestationRequest,
    AttestationResult,
    Challenge,
    DevicePublic,
    EnrolledDevice,
    EnrollmentChallenge,
    EnrollmentRequest,
    WrapReuseAnswer,
    WrapReuseReport,
    decode,
    encode,
)
from identity.requestsig import (
    HEADER_DEVICE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIME,
    canonical,
)

log = logging.getLogger("edge_agent.client")
T = TypeVar("T")


def _user_agent() -> str:
    """Names the agent and its version in the attestor's audit log (docs/audit.md)."""
    try:
        return f"edge-agent/{version('edgeproof')}"
    except PackageNotFoundError:
        return "edge-agent"


USER_AGENT = _user_agent()
M = TypeVar("M", bound=msgspec.Struct)


class AttestorError(Exception):
    """The attestor refused (4xx) or failed (5xx); carries its reason codes."""

    def __init__(self, status: int, code: str, detail: str, codes: list[str],
                 checks: list[dict[str, Any]], retry_after: float | None,
                 device_state: str | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.codes = codes or [code]
        self.checks = checks
        self.retry_after = retry_after
        self.device_state = device_state  # device.not_active: quarantined, revoked, ...

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 429

    @property
    def refusal(self) -> bool:
        """The attestor refused this device or its evidence (a verdict), as opposed to
        being unable to answer now (5xx, 429: its fault or load, retried)."""
        return 400 <= self.status < 500 and not self.retryable


class Unreachable(Exception):
    """No answer from the attestor (connection refused, timeout, TLS failure)."""


class MalformedAnswer(Unreachable):
    """The attestor (or something in front of it) answered with an unusable body."""


class TlsRefused(Unreachable):
    """The attestor's TLS certificate failed verification, or the handshake failed. Never
    followed by a retry without TLS or without verification: the agent tries again later
    (or the next attestor URL), with verification."""

    def __init__(self, url: str, reason: str, detail: str, ca_bundle: str | None,
                 who: str = "attestor") -> None:
        anchors = ca_bundle or "the system CA store (no ca_bundle configured)"
        super().__init__(f"{who} {url}: TLS refused ({reason}): {detail}; "
                         f"verified against {anchors}")
        self.url, self.reason, self.detail = url, reason, detail


# OpenSSL X509_V_ERR_* codes, named for operators (docs/agent.md, TLS)
_VERIFY_REASONS = {
    9: "tls.certificate_not_yet_valid",  # or this device's clock is behind
    10: "tls.certificate_expired",
    62: "tls.name_mismatch",  # X509_V_ERR_HOSTNAME_MISMATCH
    64: "tls.name_mismatch",  # X509_V_ERR_IP_ADDRESS_MISMATCH
}


# alerts a server sends when it does not accept our client certificate (mutual TLS)
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA",
                       "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED",
                       "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED")


def tls_refused(url: str, exc: ssl.SSLError, ca_bundle: str | None,
                who: str = "attestor") -> TlsRefused:
    """The typed error for a failed TLS session with ``url``, with a stable reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = _VERIFY_REASONS.get(exc.verify_code, "tls.untrusted")
        detail = exc.verify_message or str(exc)
        if reason == "tls.untrusted":
            detail = f"not issued by a CA in the bundle ({detail})"
        return TlsRefused(url, reason, detail, ca_bundle, who)
    text = str(exc.reason or exc)
    if text == "WRONG_VERSION_NUMBER":
        return TlsRefused(url, "tls.handshake", "the server does not speak TLS there "
                          "(a plain HTTP port?)", ca_bundle, who)
    if "ALERT" in text and text.endswith(_CLIENT_CERT_ALERTS):
        return TlsRefused(url, "tls.client_certificate_refused", f"the server refused our "
                          f"client certificate ({text})", ca_bundle, who)
    return TlsRefused(url, "tls.handshake", text, ca_bundle, who)


@dataclass(frozen=True)
class _Target:
    url: str
    https: bool
    host: str
    port: int | None
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> _Target:
        url = base_url.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        return cls(url, parts.scheme == "https", parts.hostname, parts.port, parts.path)


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _state(value: object) -> str | None:
    """A device state from a problem response: a short lower-case word, else nothing."""
    if isinstance(value, str) and value.isascii() and value.isalpha() and len(value) <= 32:
        return value.lower()
    return None


@dataclass(frozen=True)
class DeviceSigner:
    """Signs requests with the device's DevID key (in the TPM)."""

    device_id: str
    sign: Callable[[bytes], bytes]

    def headers(self, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
        nonce = secrets.token_hex(16)
        timestamp = int(now)
        message = canonical(method, path, body, timestamp, nonce, self.device_id)
        return {HEADER_DEVICE: self.device_id, HEADER_TIME: str(timestamp),
                HEADER_NONCE: nonce, HEADER_SIGNATURE: self.sign(message).hex()}


class AttestorClient:
    """``api_key`` or ``token`` authenticate a factory station; ``signer`` a device.

    Built on the standard library's ``http.client`` rather than httpx: the agent
    stays resident on small devices for years, and httpx (with the CLI extras it
    imports) costs about 8 MB of resident memory for two requests an hour (see
    docs/benchmarks.md, agent footprint). One connection is kept and reused; a
    request that fails on a reused connection before any answer is retried once on
    a new one (the server may have closed it while idle).

    ``base_url`` may be several attestor URLs: requests go to the current one, and
    :meth:`fail_over` moves to the next after a failure (the renewal loop calls it
    between its backed-off attempts; one-shot commands use :func:`with_failover`).
    HTTPS is verified against ``ca_bundle`` (else the system store), host names only
    from the certificate's SANs; a failure is :class:`TlsRefused`."""

    MAX_ANSWER = 16 * 1024 * 1024

    def __init__(self, base_url: str | Sequence[str], ca_bundle: str | None = None,
                 timeout: float = 30.0, *, api_key: str | None = None,
                 token: str | None = None, signer: DeviceSigner | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("no attestor URL")
        self._targets = [_Target.parse(url) for url in urls]
        self._current = 0
        self._timeout = timeout
        self._ca_bundle = ca_bundle
        self._context: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._station: dict[str, str] = {}
        if api_key:
            self._station["X-Api-Key"] = api_key
        elif token:
            self._station["Authorization"] = f"Bearer {token}"
        self.signer = signer

    @property
    def base_url(self) -> str:
        """The attestor URL requests go to now."""
        return self._target.url

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(t.url for t in self._targets)

    @property
    def _target(self) -> _Target:
        return self._targets[self._current]

    def fail_over(self) -> str | None:
        """Move to the next attestor URL (after a failure); None if there is only one."""
        if len(self._targets) < 2:
            return None
        self.close()
        self._current = (self._current + 1) % len(self._targets)
        return self.base_url

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> AttestorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None:
            self._conn.timeout = timeout
            return self._conn, True
        target = self._target
        if target.https:
            self._conn = http.client.HTTPSConnection(target.host, target.port, timeout=timeout,
                                                     context=self._tls_context())
        else:
            self._conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        return self._conn, False

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context(cafile=self._ca_bundle)  # TLS 1.2+, verified
            context.hostname_checks_common_name = False  # names from the SANs only
            self._context = context
        return self._context

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                timeout: float | None = None) -> Answer:
        """One exchange; Unreachable when there is no complete answer."""
        for attempt in (1, 2):
            conn, reused = self._connection(timeout or self._timeout)
            try:
                conn.request(method, self._target.prefix + path, body=body,
                             headers=headers or {})
                response = conn.getresponse()
                data = response.read(self.MAX_ANSWER + 1)
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError, ssl.SSLEOFError) as exc:
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed the idle connection: once more, afresh
                raise Unreachable(f"{self.base_url}{path}: {exc}") from exc
            except ssl.SSLError as exc:
                self.close()
                raise tls_refused(self.base_url, exc, self._ca_bundle) from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise Unreachable(f"{self.base_url}{path}: {exc or type(exc).__name__}") from exc
            if len(data) > self.MAX_ANSWER:
                self.close()
                raise MalformedAnswer(f"{path}: the answer exceeds {self.MAX_ANSWER} bytes")
            if response.will_close:
                self.close()
            return Answer(response.status, response.reason,
                          {k.lower(): v for k, v in response.getheaders()}, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, path: str, body: msgspec.Struct | Mapping[str, object] | None,
              answer: type[M], signed: bool = False) -> M:
        """POST ``body`` (a protocol model; a mapping is sent as it is, which only the
        simulators and tests do, to send what no model would build) and parse the answer."""
        if isinstance(body, msgspec.Struct):
            # defaults left out: an older attestor accepts what it does not know as absent
            content = encode(body)
        else:
            content = json.dumps(body or {}, separators=(",", ":")).encode()
        return parse_answer(path, answer, self._exchange("POST", path, content, signed))

    def _exchange(self, method: str, path: str, content: bytes, signed: bool) -> bytes:
        """The body of a 2xx answer; AttestorError for any other."""
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        if signed:  # one credential per request: the device's own
            if self.signer is None:
                raise Unreachable("no device signer: this device is not provisioned")
            headers |= self.signer.headers(method, self._target.prefix + path, content,
                                           self.clock())
        else:
            headers |= self._station
        answer = self.request(method, path, content if method == "POST" else None, headers)
        if 200 <= answer.status < 300:
            return answer.body
        try:
            problem = json.loads(answer.body)
        except ValueError:
            problem = {}
        if not isinstance(problem, dict):
            problem = {}
        raise AttestorError(
            answer.status, str(problem.get("code", "http.error")),
            str(problem.get("detail") or problem.get("title") or answer.reason),
            list(problem.get("codes") or []), list(problem.get("checks") or []),
            _retry_after(answer.headers.get("retry-after")),
            _state(problem.get("device_state")),
        )

    def health(self) -> dt.datetime | None:
        """GET /healthz; the attestor's clock (its Date header), Unreachable if no answer."""
        answer = self.request("GET", "/healthz", timeout=5.0)
        if not 200 <= answer.status < 300:
            raise Unreachable(f"{self.base_url}/healthz answered {answer.status}")
        date = answer.headers.get("date")
        try:
            return email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            return None

    def enroll(self, body: EnrollmentRequest | Mapping[str, object]) -> EnrollmentChallenge:
        return self._post("/v1/enrollments", body, EnrollmentChallenge)

    def activate(self, enrollment_id: str, body: ActivationRequest) -> EnrolledDevice:
        return self._post(f"/v1/enrollments/{enrollment_id}/activation", body,
                          EnrolledDevice)

    def onboarding_challenge(self, body: OnboardingChallengeRequest) -> OnboardingChallenge:
        """First boot with no API key: a nonce for this IDevID (docs/onboarding.md)."""
        return self._post("/v1/onboarding/challenges", body, OnboardingChallenge)

    def onboard(self, body: OnboardingRequest) -> OnboardedDevice:
        """The onboarding evidence for that nonce; the LDevID certificate in answer."""
        return self._post("/v1/onboarding", body, OnboardedDevice)

    def challenge(self, device_id: str) -> Challenge:
        return self._post(f"/v1/devices/{device_id}/challenge", None, Challenge, signed=True)

    def attest(self, device_id: str,
               body: AttestationRequest | Mapping[str, object]) -> AttestationResult:
        return self._post(f"/v1/devices/{device_id}/attestations", body, AttestationResult,
                          signed=True)

    def device(self, device_id: str) -> DevicePublic:
        """This device's record as the attestor has it (GET, signed by the DevID key)."""
        path = f"/v1/devices/{device_id}"
        return parse_answer(path, DevicePublic, self._exchange("GET", path, b"", signed=True))

    def report_wrap_reuse(self, device_id: str, report: WrapReuseReport) -> WrapReuseAnswer:
        """Tell the attestor a Vault wrapping token was spent before we used it."""
        return self._post(f"/v1/devices/{device_id}/secrets/wrap-reuse", report,
                          WrapReuseAnswer, signed=True)


def parse_answer(path: str, model: type[M], content: bytes) -> M:
    """A 2xx answer as its protocol model; MalformedAnswer (naming the first wrong field)
    when it is not JSON or not that shape, never a KeyError or TypeError later on."""
    try:
        return decode(model, content)
    except msgspec.ValidationError as exc:  # before DecodeError: it is a subclass
        raise MalformedAnswer(f"{path}: the attestor's answer is malformed (expected "
                              f"{model.__name__}): {exc}") from exc
    except msgspec.DecodeError as exc:
        raise MalformedAnswer(f"{path}: the attestor's answer is not JSON "
                              f"({len(content)} bytes)") from exc


def with_failover(client: AttestorClient, action: Callable[[], T]) -> T:
    """``action`` against each attestor URL in turn until one answers (one-shot commands;
    the daemon fails over between backed-off attempts instead). A refusal (4xx) is an
    answer: it is raised at once, not retried elsewhere."""
    for _ in range(len(client.urls) - 1):
        try:
            return action()
        except (Unreachable, AttestorError) as exc:
            if isinstance(exc, AttestorError) and not exc.retryable:
                raise
            failed = client.base_url
            log.warning("attestor %s failed (%s); trying %s", failed, exc, client.fail_over())
    return action()
