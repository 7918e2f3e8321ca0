"""Secrets delivered as Vault response-wrapping tokens: unwrapped here, at Vault.

The attestor hands over a single-use token (``vault_wrap``); the device presents it
to ``sys/wrapping/unwrap`` and reads the field it was told. If Vault says the token
is not valid while its TTL has not run out, someone else unwrapped it first: the
device reports that to the attestor (which confirms with Vault, audits and alerts)
and installs nothing from this attestation; the next one brings a fresh token.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from agent.client import AttestorClient, MalformedAnswer, Unreachable
from identity.messages import AttestationResult, VaultWrapped, WrapReuseReport

log = logging.getLogger("edge_agent.vault")
SPENT = "wrapping token is not valid or does not exist"


class WrappedSecretUnavailable(Unreachable):
    """A wrapped secret could not be unwrapped; the current credentials stay."""


def unwrap(wrap: VaultWrapped, ca_bundle: Path | None, timeout: float = 10.0) -> bytes:
    """The secret's value; ``WrappedSecretUnavailable`` (with ``spent``) on refusal."""
    with AttestorClient(wrap.address, timeout=timeout,
                        ca_bundle=str(ca_bundle) if ca_bundle else None) as vault:
        answer = vault.request("POST", "/v1/sys/wrapping/unwrap", body=b"{}", headers={
            "X-Vault-Token": wrap.token, "Content-Type": "application/json"})
    try:
        body = json.loads(answer.body or b"{}")
    except ValueError as exc:
        raise MalformedAnswer("Vault's unwrap answer is not JSON") from exc
    if answer.status != 200:
        errors = body.get("errors") if isinstance(body, dict) else None
        error = WrappedSecretUnavailable(f"Vault refused to unwrap ({answer.status}): "
                                         f"{'; '.join(map(str, errors or []))[:200]}")
        error.spent = answer.status == 400 and SPENT in (errors or [])  # type: ignore[attr-defined]
        raise error
    try:
        value = body["data"]["data"][wrap.field]
    except (KeyError, TypeError) as exc:
        raise MalformedAnswer("the unwrapped secret lacks its field") from exc
    if not isinstance(value, str):
        raise MalformedAnswer("the unwrapped secret is not text")
    return value.encode()


def resolve(result: AttestationResult, client: AttestorClient, device_id: str,
            ca_bundle: Path | None, received: float) -> dict[str, bytes]:
    """Unwrap every ``vault_wrap`` secret of an attestation result: name -> value.
    ``received`` is the monotonic time the result arrived (for the TTL check)."""
    values: dict[str, bytes] = {}
    for secret in result.secrets:
        wrap = secret.vault_wrap
        if wrap is None:
            continue
        try:
            values[secret.name] = unwrap(wrap, ca_bundle)
        except WrappedSecretUnavailable as exc:
            age = int(time.monotonic() - received)
            if getattr(exc, "spent", False) and age < wrap.ttl_seconds:
                log.error("wrapping token for %s was already used: reporting it", secret.name)
                client.report_wrap_reuse(device_id, WrapReuseReport(
                    name=secret.name, token=wrap.token, age_seconds=age))
            raise
    return values
