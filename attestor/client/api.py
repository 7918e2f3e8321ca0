"""A typed, synchronous client for the attestor's operator API.

Requests and answers are the API's own models (``attestor.models``, pydantic; devices
are the protocol's ``identity.messages`` structs), never dicts: what the server sends
is validated on arrival, and a wrong shape is a ``client.bad_answer`` error.
docs/cli.md has examples.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import msgspec
import pydantic
from pydantic import TypeAdapter

from attestor.client.errors import ApiError, ClientError, TransportError
from attestor.models.common import Problem
from attestor.models.fleet import (
    PolicyLearn,
    PolicyLearned,
    TrustAdd,
    TrustImport,
    TrustStorePublic,
)
from attestor.models.gate import GateDecision, GateDecisionRequest
from attestor.models.operator import (
    AttestationPublic,
    AuditPublic,
    AuditVerification,
    CertificatePublic,
    DryRun,
    Page,
    PolicyCreate,
    PolicyVersion,
    RevokeRequest,
    StateChange,
)
from attestor.models.ownership import (
    ImportResult,
    ManifestIn,
    OwnershipPublic,
    RootPublic,
    RootsIn,
    SerialsIn,
)
from identity.messages import DevicePage, DevicePublic, decode
from identity.policy import GateRule, PolicyDocument

T = TypeVar("T")
Lifecycle = Literal["quarantine", "release", "revoke", "decommission"]
USER_AGENT = "edgeproof-client/1"


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verify the server against ``ca_bundle`` (PEM) or the system's CAs; never off."""
    try:
        return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    except (OSError, ssl.SSLError) as exc:
        raise ClientError("client.ca_bundle", f"cannot read the CA bundle {ca_bundle}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from exc


class OperatorClient:
    """The operator API at ``server`` with a bearer ``token`` (or none: public endpoints).

    Plain ``http://`` is accepted only for a loopback address (a development attestor):
    anywhere else the token would cross the network in the clear."""

    def __init__(self, server: str, token: str | None = None, *,
                 ca_bundle: Path | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        scheme = urlsplit(server).scheme
        if scheme not in ("http", "https"):
            raise ClientError("client.bad_server", f"{server!r} is not an http(s) URL")
        if scheme == "http" and not is_loopback(server):
            raise ClientError("client.insecure", f"{server} is plain HTTP: the token would "
                              "travel in the clear; use https:// (plain HTTP only to a "
                              "loopback address)")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.server = server.rstrip("/")
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  verify=_tls(ca_bundle) if scheme == "https" else True,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: pydantic.BaseModel | None = None, stream: bool = False
              ) -> httpx.Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = body.model_dump_json() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        request = self._http.build_request(method, path, params=query, content=content,
                                           headers=headers)
        try:
            response = self._http.send(request, stream=stream)
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, ssl.SSLError) or "CERTIFICATE" in str(exc):
                raise TransportError("client.tls", f"{self.server}: TLS failed: {exc} "
                                     "(--ca-bundle names the CA that signed the attestor's "
                                     "certificate)") from exc
            raise TransportError("client.unreachable", f"{self.server}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise TransportError("client.timeout", f"{self.server}: no answer in time "
                                 f"({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise TransportError("client.unreachable", f"{self.server}: {exc}") from exc
        if response.status_code >= 400:
            if stream:
                response.read()
            raise _problem(response)
        return response

    def _get(self, model: type[T], path: str, **params: Any) -> T:
        result: T = _parse(model, self._send("GET", path, params=params).content)
        return result

    def _get_list(self, item: type[T], path: str) -> list[T]:
        result: list[T] = _parse(list[item], self._send("GET", path).content)  # type: ignore[valid-type]
        return result

    def _post(self, model: type[T], path: str, body: pydantic.BaseModel | None,
              **params: Any) -> T:
        result: T = _parse(model, self._send("POST", path, params=params, body=body).content)
        return result

    @staticmethod
    def _pages(fetch: Callable[[str | None], Any], limit: int | None) -> Iterator[Any]:
        """Every item of every page (``limit``: at most that many)."""
        cursor: str | None = None
        count = 0
        while True:
            page = fetch(cursor)
            for item in page.items:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield item
            cursor = page.next_cursor
            if cursor is None:
                return

    # -- devices ----------------------------------------------------------------------

    def devices(self, *, state: str | None = None, device_class: str | None = None,
                reason: str | None = None, cursor: str | None = None,
                limit: int = 100) -> DevicePage:
        return self._get(DevicePage, "/v1/devices", state=state, reason=reason,
                         cursor=cursor, limit=limit, **{"class": device_class})

    def iter_devices(self, *, max_items: int | None = None, **filters: Any
                     ) -> Iterator[DevicePublic]:
        return self._pages(lambda c: self.devices(cursor=c, limit=500, **filters), max_items)

    def device(self, device_id: str) -> DevicePublic:
        return self._get(DevicePublic, f"/v1/devices/{_seg(device_id)}")

    def attestations(self, device_id: str, *, cursor: str | None = None,
                     limit: int = 50) -> Page[AttestationPublic]:
        return self._get(Page[AttestationPublic],
                         f"/v1/devices/{_seg(device_id)}/attestations",
                         cursor=cursor, limit=limit)

    def iter_attestations(self, device_id: str, *, max_items: int | None = None
                          ) -> Iterator[AttestationPublic]:
        return self._pages(lambda c: self.attestations(device_id, cursor=c, limit=500),
                           max_items)

    def change_state(self, device_id: str, action: Lifecycle, reason: str) -> DevicePublic:
        """Quarantine, release, revoke or decommission (admins; audited)."""
        return self._post(DevicePublic, f"/v1/devices/{_seg(device_id)}/{action}",
                          StateChange(reason=reason))

    # -- policies and gate rules --------------------------------------------------------

    def policy_classes(self) -> list[str]:
        return self._get_list(str, "/v1/policies")

    def policy_versions(self, device_class: str) -> list[PolicyVersion]:
        """Every version, newest (the one in force) first."""
        return self._get_list(PolicyVersion, f"/v1/policies/{_seg(device_class)}")

    def policy(self, device_class: str) -> PolicyVersion:
        """The version in force; ``request.not_found`` when the class has none."""
        versions = self.policy_versions(device_class)
        if not versions:
            # as the server answers for a version it does not have
            raise ApiError(404, Problem(
                type="https://edgeproof.dev/problems/request.not_found",
                title="request refused", status=404, code="request.not_found",
                detail=f"no policy for class {device_class!r}", codes=["request.not_found"]))
        return versions[0]

    def set_policy(self, device_class: str, document: PolicyDocument) -> PolicyVersion:
        return self._post(PolicyVersion, f"/v1/policies/{_seg(device_class)}",
                          PolicyCreate(document=document))

    def learn_policy(self, device_class: str, request: PolicyLearn) -> PolicyLearned:
        return self._post(PolicyLearned, f"/v1/policies/{_seg(device_class)}/learn", request)

    def dry_run(self, device_class: str, device_id: str, *, version: int | None = None,
                document: PolicyDocument | None = None) -> DryRun:
        body = PolicyCreate(document=document) if document is not None else None
        return self._post(DryRun, f"/v1/policies/{_seg(device_class)}/dry-run", body,
                          device_id=device_id, version=version)

    def gate_rules(self, device_class: str) -> list[GateRule]:
        """The gate rules of the class's policy in force, first match wins."""
        document = PolicyDocument.model_validate(self.policy(device_class).document)
        return list(document.gates)

    def gate_decision(self, device_id: str, action: str) -> GateDecision:
        """May the device do ``action`` now? (role gatekeeper; audited)"""
        return self._post(GateDecision, "/v1/gate/decisions",
                          GateDecisionRequest(device_id=device_id, action=action))

    # -- certificates -------------------------------------------------------------------

    def certificates(self, *, device_id: str | None = None, status: str | None = None,
                     cursor: str | None = None, limit: int = 100) -> Page[CertificatePublic]:
        return self._get(Page[CertificatePublic], "/v1/certificates", device_id=device_id,
                         status=status, cursor=cursor, limit=limit)

    def iter_certificates(self, *, max_items: int | None = None, **filters: Any
                          ) -> Iterator[CertificatePublic]:
        return self._pages(lambda c: self.certificates(cursor=c, limit=1000, **filters),
                           max_items)

    def revoke_certificate(self, serial: str, reason: str = "unspecified"
                           ) -> CertificatePublic:
        return self._post(CertificatePublic, f"/v1/certificates/{_seg(serial)}/revoke",
                          RevokeRequest(reason=reason))

    # -- audit --------------------------------------------------------------------------

    def audit(self, *, cursor: str | None = None, limit: int = 100,
              **filters: str | None) -> Page[AuditPublic]:
        """One page of entries; ``filters`` are the API's query parameters as named there
        (``device_id``, ``actor``, ``action``, ``outcome``, ``since``, ``until``, ...)."""
        return self._get(Page[AuditPublic], "/v1/audit", cursor=cursor, limit=limit,
                         **filters)

    def iter_audit(self, *, max_items: int | None = None, **filters: str | None
                   ) -> Iterator[AuditPublic]:
        return self._pages(lambda c: self.audit(cursor=c, limit=1000, **filters), max_items)

    def audit_export(self, **filters: str | None) -> Iterator[bytes]:
        """The export, streamed: each item one JSON Lines line, newline included, as the
        server wrote it (its hash chain depends on the exact bytes)."""
        response = self._send("GET", "/v1/audit/export", params=filters, stream=True)
        try:
            yield from _lines(response.iter_bytes())
        except httpx.HTTPError as exc:  # the connection broke mid-export
            raise TransportError("client.unreachable", f"{self.server}: the export was cut "
                                 f"off: {exc}") from exc
        finally:
            response.close()

    def audit_verify(self) -> AuditVerification:
        """The server walks its whole chain."""
        return self._get(AuditVerification, "/v1/audit/verify")

    def audit_checkpoint_key(self) -> str:
        """The public key (PEM) that checks the audit log's signed checkpoints."""
        response = self._send("GET", "/v1/audit/checkpoint-key")
        text = response.text
        if "json" in response.headers.get("content-type", ""):
            found = [v for v in json.loads(text).values()
                     if isinstance(v, str) and "-----BEGIN" in v]
            text = found[0] if found else ""
        if "-----BEGIN" not in text:
            raise TransportError("client.bad_answer", "the checkpoint key is not PEM")
        return text

    # -- trust store ----------------------------------------------------------------------

    def trust(self) -> TrustStorePublic:
        return self._get(TrustStorePublic, "/v1/trust")

    def add_trust(self, files: list[bytes]) -> TrustImport:
        """Import vendor CA certificates, one item per file's content (PEM or DER)."""
        return self._post(TrustImport, "/v1/trust", TrustAdd(certificates=files))

    # -- ownership (zero-touch onboarding, docs/onboarding.md) ---------------------------

    def ownership_roots(self) -> list[RootPublic]:
        """Manufacturer CA certificates trusted for IAK/IDevID chains and manifests."""
        return self._get_list(RootPublic, "/v1/ownership/roots")

    def import_ownership_roots(self, pem: str) -> list[RootPublic]:
        """Trust a manufacturer's CA certificates (PEM); the ones newly added (admin)."""
        return self._post(list[RootPublic], "/v1/ownership/roots",
                          RootsIn(certificates=pem))

    def remove_ownership_root(self, sha256: str) -> None:
        self._send("DELETE", f"/v1/ownership/roots/{_seg(sha256)}")

    def import_manifest(self, manifest: str, device_class: str = "default") -> ImportResult:
        """Own every device of an OEM's signed batch manifest (admin; signature checked
        by the server against the imported roots)."""
        return self._post(ImportResult, "/v1/ownership/manifests",
                          ManifestIn(manifest=manifest, device_class=device_class))

    def import_serials(self, csv: str, root_sha256: str,
                       device_class: str = "default") -> ImportResult:
        """Own the serials of a CSV, bound to one imported manufacturer root (admin)."""
        return self._post(ImportResult, "/v1/ownership/serials",
                          SerialsIn(csv=csv, root_sha256=root_sha256.lower(),
                                    device_class=device_class))

    def ownership(self, *, state: str | None = None, after: str | None = None,
                  limit: int = 100) -> list[OwnershipPublic]:
        """One page of ownership records by serial, those after ``after``."""
        return self._get(list[OwnershipPublic], "/v1/ownership",
                         state=state, after=after, limit=limit)

    def iter_ownership(self, *, state: str | None = None, max_items: int | None = None
                       ) -> Iterator[OwnershipPublic]:
        after: str | None = None
        count = 0
        while True:
            page = self.ownership(state=state, after=after, limit=1000)
            for row in page:
                if max_items is not None and count >= max_items:
                    return
                count += 1
                yield row
            if len(page) < 1000:
                return
            after = page[-1].serial

    def revoke_ownership(self, serial: str) -> OwnershipPublic:
        """This serial may never onboard (again) (admin; audited)."""
        return self._post(OwnershipPublic, f"/v1/ownership/{_seg(serial)}/revoke", None)

    def release_ownership(self, serial: str) -> OwnershipPublic:
        """An onboarded (or revoked) serial may onboard once more (admin; audited)."""
        return self._post(OwnershipPublic, f"/v1/ownership/{_seg(serial)}/release", None)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines, each with its newline, from a byte stream cut anywhere."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending


def _seg(value: str) -> str:
    return quote(value, safe="")


_adapters: dict[Any, TypeAdapter[Any]] = {}


def _parse(model: Any, content: bytes) -> Any:
    try:
        if isinstance(model, type) and issubclass(model, msgspec.Struct):
            return decode(model, content)
        adapter = _adapters.get(model)
        if adapter is None:
            adapter = _adapters[model] = TypeAdapter(model)
        return adapter.validate_json(content)
    except (msgspec.DecodeError, pydantic.ValidationError) as exc:
        raise TransportError("client.bad_answer", f"the answer is not the API's "
                             f"{getattr(model, '__name__', model)}: {exc}") from exc


def _problem(response: httpx.Response) -> ClientError:
    try:
        problem = Problem.model_validate_json(response.content)
    except pydantic.ValidationError:
        reason = response.reason_phrase or "error"
        return TransportError("client.bad_answer", f"HTTP {response.status_code} {reason} "
                              "without a problem document (a proxy in the way?)")
    return ApiError(response.status_code, problem)


__all__ = ["ApiError", "ClientError", "OperatorClient", "TransportError"]
