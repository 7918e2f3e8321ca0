"""Policies, certificates, pre-registration and the audit log, for operators."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from attestor import audit
from attestor.api.deps import Admin, Enroller, Reader, ServicesDep
from attestor.db import queries
from attestor.db.chain import OUTCOMES
from attestor.models.common import FILTER_TEXT, problems
from attestor.models.fleet import PolicyLearn, PolicyLearned
from attestor.models.operator import (
    AuditPublic,
    AuditVerification,
    CertificatePublic,
    DryRun,
    Page,
    PolicyCreate,
    PolicyVersion,
    PreregistrationBatch,
    PreregistrationPublic,
    PreregistrationResult,
    RevokeRequest,
)
from attestor.services import certificates, policies, preregistration
from attestor.services.audit_export import checkpoint_keys_pem, export_lines
from attestor.services.background import verify_audit
from attestor.services.devices import decode_position, encode_cursor
from identity.errors import MalformedInput
from identity.policy import parse_policy

router = APIRouter(prefix="/v1")
Class = Path(min_length=1, max_length=64, pattern=r"^[\w.:@/+\- ]+$")
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=256)]
AUTH = problems(s401="no credential", s403="not allowed")


@router.get("/policies", tags=["policies"], response_model=list[str], responses=AUTH)
async def policy_classes(svc: ServicesDep, caller: Reader) -> list[str]:
    """Device classes that have a policy."""
    def run() -> list[str]:
        with svc.session() as session:
            return queries.policy_classes(session)
    return await run_in_threadpool(run)


@router.get("/policies/{device_class}", tags=["policies"], response_model=list[PolicyVersion],
            responses=AUTH)
async def policy_history(svc: ServicesDep, caller: Reader,
                         device_class: str = Class) -> list[PolicyVersion]:
    """Every version of a class's policy, newest first (the newest is in force)."""
    def run() -> list[PolicyVersion]:
        with svc.session() as session:
            return [policies.view(r) for r in policies.versions(session, device_class)]
    return await run_in_threadpool(run)


@router.post("/policies/{device_class}", tags=["policies"], status_code=201,
             response_model=PolicyVersion, responses=AUTH)
async def create_policy(body: PolicyCreate, svc: ServicesDep, caller: Admin,
                        device_class: str = Class) -> PolicyVersion:
    """A new immutable version of the class's policy; it is in force at once."""
    def run() -> PolicyVersion:
        with svc.session() as session, session.begin():
            return policies.view(policies.set_policy(session, device_class, body.document,
                                                     caller.actor, svc.clock()))
    return await run_in_threadpool(run)


@router.post("/policies/{device_class}/learn", tags=["policies"], status_code=201,
             response_model=PolicyLearned,
             responses=problems(s400="nothing to learn from, or a malformed log",
                                s401="no credential", s403="admins only",
                                s404="unknown device"))
async def learn_policy(body: PolicyLearn, svc: ServicesDep, caller: Admin,
                       device_class: str = Class) -> PolicyLearned:
    """A new version of the class's policy learned from a known-good device's last
    verified attestation (golden PCRs, boot policy from its event log) and/or known-good
    logs; the caller vouches that what is learned from was good. In force at once."""
    return await run_in_threadpool(policies.learn_request, svc, device_class, body, caller)


@router.post("/policies/{device_class}/dry-run", tags=["policies"], response_model=DryRun,
             responses=problems(s401="no credential", s403="not allowed",
                                s404="no such version or evidence"))
async def dry_run(svc: ServicesDep, caller: Reader, device_class: str = Class,
                  device_id: Annotated[str, Query(max_length=64, pattern=FILTER_TEXT)] = "",
                  version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
                  body: Annotated[PolicyCreate | None, Body()] = None) -> DryRun:
    """Evaluate a stored version (or a document in the body) against a device's last
    verified evidence, without changing anything."""
    def run() -> DryRun:
        with svc.session() as session:
            document = (body.document if body is not None else
                        parse_policy(policies.version(session, device_class,
                                                               version).document))
            outcome = policies.dry_run(session, device_id, document)
        runner = outcome.runner
        assert outcome.evidence.id is not None  # noqa: S101
        return DryRun(device_id=device_id, device_class=outcome.device_class,
                      version=None if body is not None else version,
                      attestation_id=outcome.evidence.id,
                      verdict="pass" if runner.passed else "fail",
                      reasons=runner.reason_codes, checks=[c.as_dict() for c in runner.checks],
                      not_evaluated=outcome.not_evaluated)
    return await run_in_threadpool(run)


@router.get("/certificates", tags=["certificates"], response_model=Page[CertificatePublic],
            responses=AUTH)
async def list_certificates(svc: ServicesDep, caller: Reader,
                            device_id: Annotated[str | None, Query(
                                max_length=64, pattern=FILTER_TEXT)] = None,
                            status: Annotated[str | None, Query(
                                pattern=r"^(issued|pending|void|revoked)$")] = None,
                            cursor: Cursor = None, limit: Limit = 100
                            ) -> Page[CertificatePublic]:
    """Issued certificates: serial, device, not-after, status."""
    return await run_in_threadpool(certificates.find, svc, device_id, status, cursor, limit)


@router.post("/certificates/{serial}/revoke", tags=["certificates"],
             response_model=CertificatePublic,
             responses=problems(s401="no credential", s403="admins only",
                                s404="unknown serial", s409="already revoked"))
async def revoke_certificate(body: RevokeRequest, svc: ServicesDep, caller: Admin,
                             serial: str = Path(pattern=r"^[0-9a-fA-F]{1,64}$")
                             ) -> CertificatePublic:
    return await run_in_threadpool(certificates.revoke, svc, serial, body.reason, caller)


@router.get("/crl", tags=["certificates"], response_class=Response,
            responses={200: {"content": {"application/pkix-crl": {}}}})
async def crl(svc: ServicesDep) -> Response:
    """The CRL (DER) of revoked device identity certificates; public by nature."""
    data = await run_in_threadpool(certificates.crl, svc)
    return Response(data, media_type="application/pkix-crl")


@router.post("/preregistrations", tags=["enrollment"], status_code=201,
             response_model=PreregistrationResult,
             responses=problems(s401="no credential", s403="not allowed",
                                s409="an EK is already pre-registered"))
async def preregister(body: PreregistrationBatch, svc: ServicesDep,
                      caller: Enroller) -> PreregistrationResult:
    """Pre-register devices (serial, model, class, EK certificate or public key); all or
    nothing."""
    return await run_in_threadpool(preregistration.create, svc, body.devices, caller)


@router.post("/preregistrations/csv", tags=["enrollment"], status_code=201,
             response_model=PreregistrationResult,
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {
                 "type": "string"}}}, "required": True}},
             responses=problems(s400="malformed CSV", s401="no credential",
                                s403="not allowed", s409="an EK is already pre-registered"))
async def preregister_csv(svc: ServicesDep, caller: Enroller,
                          csv_body: Annotated[bytes, Body(media_type="text/csv")] = b""
                          ) -> PreregistrationResult:
    """The same, as CSV: serial, model, device_class, ek_certificate, ek_public_key."""
    try:
        text = csv_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput("the CSV is not UTF-8") from exc
    items = preregistration.parse_csv(text)
    return await run_in_threadpool(preregistration.create, svc, items, caller)


@router.get("/preregistrations", tags=["enrollment"],
            response_model=Page[PreregistrationPublic], responses=AUTH)
async def pending_preregistrations(svc: ServicesDep, caller: Enroller, cursor: Cursor = None,
                                   limit: Limit = 100) -> Page[PreregistrationPublic]:
    """Pre-registered devices that have not enrolled yet."""
    return await run_in_threadpool(preregistration.pending, svc, cursor, limit)


def _audit_filter(since: dt.datetime | None, until: dt.datetime | None, device_id: str | None,
                  actor: str | None, action: str | None, outcome: str | None,
                  reason: str | None) -> queries.AuditFilter:
    return queries.AuditFilter(since, until, device_id, actor, action, outcome, reason)


AuditQuery = Annotated[str | None, Query(max_length=128, pattern=FILTER_TEXT)]
ActorPrefix = Annotated[str | None, Query(max_length=128, pattern=FILTER_TEXT, description=(
    "entries whose actor starts with this (token:, apikey:, device:, cli:, attestor)"))]
Outcome = Annotated[str | None, Query(pattern=f"^({'|'.join(OUTCOMES)})$")]
Reason = Annotated[str | None, Query(max_length=64, pattern=FILTER_TEXT,
                                     description="entries whose reasons hold this code")]


@router.get("/audit", tags=["audit"], response_model=Page[AuditPublic], responses=AUTH)
async def audit_query(svc: ServicesDep, caller: Reader, since: dt.datetime | None = None,
                      until: dt.datetime | None = None, device_id: AuditQuery = None,
                      actor: ActorPrefix = None, action: AuditQuery = None,
                      outcome: Outcome = None, reason: Reason = None, cursor: Cursor = None,
                      limit: Limit = 100) -> Page[AuditPublic]:
    """Audit entries in sequence order, filtered (time range ``since`` inclusive,
    ``until`` exclusive); ``next_cursor`` pages on by sequence number, stable while
    entries are appended. The hash chain's fields included."""
    after = decode_position(cursor) or 0
    f = _audit_filter(since, until, device_id, actor, action, outcome, reason)

    def run() -> Page[AuditPublic]:
        with svc.session() as session:
            rows = queries.audit_page(session, f, after, limit + 1)
        items = [AuditPublic.model_validate(audit.event_json(r)) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items=items, next_cursor=encode_cursor(items[-1].seq) if more else None)
    return await run_in_threadpool(run)


@router.get("/audit/export", tags=["audit"], response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}, **AUTH})
async def audit_export(svc: ServicesDep, caller: Reader, since: dt.datetime | None = None,
                       until: dt.datetime | None = None, device_id: AuditQuery = None,
                       actor: ActorPrefix = None, action: AuditQuery = None,
                       outcome: Outcome = None, reason: Reason = None) -> StreamingResponse:
    """Every matching entry as JSON Lines, streamed, with the signed checkpoints and a
    signed last line: `attestor audit verify --file` checks it offline (docs/audit.md)."""
    f = _audit_filter(since, until, device_id, actor, action, outcome, reason)
    return StreamingResponse(export_lines(svc, f),
                             media_type="application/x-ndjson")


@router.get("/audit/checkpoint-key", tags=["audit"], response_class=PlainTextResponse,
            responses={200: {"content": {"application/x-pem-file": {}}}, **AUTH})
async def audit_checkpoint_key(svc: ServicesDep, caller: Reader) -> PlainTextResponse:
    """The public keys that verify the audit checkpoints and exports (PEM, every key of
    the ring: retired ones still verify what they signed)."""
    pem = await run_in_threadpool(checkpoint_keys_pem, svc)
    return PlainTextResponse(pem, media_type="application/x-pem-file")


@router.get("/audit/verify", tags=["audit"], response_model=AuditVerification, responses=AUTH)
async def audit_verify(svc: ServicesDep, caller: Reader) -> AuditVerification:
    """Walk the whole chain: edited, deleted, reordered or truncated entries are named;
    entries after the last valid checkpoint are reported as unanchored, not verified."""
    def run() -> AuditVerification:
        report = verify_audit(svc)  # the metrics report its outcome too
        return AuditVerification(ok=report.ok, entries=report.entries,
                                 last_seq=report.last_seq, checkpoints=report.checkpoints,
                                 anchored_seq=report.anchored_seq,
                                 base_seq=report.base_seq,
                                 unanchored_entries=report.unanchored_entries,
                                 unanchored_since=report.unanchored_since,
                                 problems=report.problems)
    return await run_in_threadpool(run)
